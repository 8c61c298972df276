from tests.api_support import *  # noqa

async def test_scratch(world):
    api = world.api
    p = await world.project()
    t = world.treasurer
    async def show(label, r):
        print("###", label, r.status_code, r.headers.get("content-type"), r.headers.get("allow"), r.text[:400])
    await show("after_seq huge", await api.get(f"/api/v1/projects/{p}/entries", params={"after_seq": "99999999999999999999"}))
    await show("seq huge", await api.get(f"/api/v1/projects/{p}/entries/99999999999999999999"))
    await show("size huge", await api.get(f"/api/v1/projects/{p}/ledger", params={"size": "99999999999999999999"}))
    await show("limit abc", await api.get(f"/api/v1/projects/{p}/entries", params={"limit": "abc"}))
    await show("limit 0", await api.get(f"/api/v1/projects/{p}/entries", params={"limit": "0"}))
    await show("limit huge", await api.get(f"/api/v1/projects/{p}/entries", params={"limit": "99999999999999999999"}))
    await show("cursor", await api.get(f"/api/v1/communities", params={"cursor": "99999999999999999"}))
    await show("put", await api.request("PUT", f"/api/v1/projects/{p}/entries/1", json_body={}, token=t))
    await show("patch", await api.request("PATCH", f"/api/v1/projects/{p}/entries", json_body={}, token=t))
    await show("delete", await api.request("DELETE", f"/api/v1/projects/{p}/entries/1", token=t))
    await show("delete batch", await api.request("DELETE", f"/api/v1/projects/{p}/entries/batch", token=t))
    await show("bad json no token", await api.request("POST", f"/api/v1/projects/{p}/entries", content=b"{", key="k"))
    await show("bad ct", await api.request("POST", f"/api/v1/projects/{p}/entries", content=b"{}", key="k", token=t, headers={"Content-Type":"text/plain"}))
    await show("bad key", await api.request("POST", f"/api/v1/projects/{p}/entries", content=b"{}", key="k k", token=t))
    await show("big", await api.request("POST", f"/api/v1/projects/{p}/entries", content=b'{"a":"' + b"x"*70000 + b'"}', key="k", token=t))
    async def gen():
        yield b'{"a":"'
        for _ in range(100):
            yield b"x"*1000
        yield b'"}'
    r = await api.client.post(f"/api/v1/projects/{p}/entries", content=gen(), headers={"Authorization": f"Bearer {t}", "Idempotency-Key": "kk", "Content-Type": "application/json"})
    print("chunked", r.request.headers, r.status_code, r.text[:300])
    await show("empty body", await api.request("POST", f"/api/v1/projects/{p}/entries", content=b"", key="k", token=t))
    await show("missing proj no token", await api.post("/api/v1/projects/nope-nope/entries", contribution(), key="k"))
    await show("garbage get", await api.get(f"/api/v1/projects/{p}", token="garbage"))
    await show("garbage ledger get", await api.get(f"/api/v1/projects/{p}/ledger", token="garbage"))
    await show("basic", await api.get(f"/api/v1/projects/{p}", headers={"Authorization": "Basic abc"}))
    await show("revoke unknown", await api.delete(f"/api/v1/tokens/{uuid.uuid4()}", token=world.admin))
    await show("revoke bad uuid", await api.delete(f"/api/v1/tokens/zzz", token=world.admin))
    await show("unknown route", await api.get(f"/api/v1/nothing"))
    await show("projects stage bad", await api.get(f"/api/v1/projects", params={"stage":"x"}))
    await show("contrib number", await api.post(f"/api/v1/projects/{p}/entries", contribution(amount=200), key=new_key(), token=t))
    await show("contrib smuggle", await api.post(f"/api/v1/projects/{p}/entries", contribution(seq=5, leaf_hash="ab", recorded_by="x"), key=new_key(), token=t))
    await show("batch err", await api.post(f"/api/v1/projects/{p}/entries/batch", {"entries":[contribution()]*3 + [contribution(amount="1.234")]}, key=new_key(), token=t))
    await show("batch ledger err", await api.post(f"/api/v1/projects/{p}/entries/batch", {"entries":[contribution()]*3 + [expenditure(category="nope")]}, key=new_key(), token=t))
    await show("batch insufficient", await api.post(f"/api/v1/projects/{p}/entries/batch", {"entries":[contribution()]*3 + [expenditure(amount="100000")]}, key=new_key(), token=t))
    await show("future", await api.post(f"/api/v1/projects/{p}/entries", contribution(occurred_on=future()), key=new_key(), token=t))
    await show("inclusion empty", await api.get(f"/api/v1/projects/{p}/ledger/inclusion", params={"seq": 1}))
    await show("consistency empty", await api.get(f"/api/v1/projects/{p}/ledger/consistency", params={"from": 0, "to": 0}))
    await show("ledger root missing proj", await api.get(f"/api/v1/projects/nope/ledger"))
    await show("token create", await api.post(f"/api/v1/tokens", {"name":"x","role":"treasurer","community":"nope-x"}, token=world.admin))
    await show("token create admin with comm", await api.post(f"/api/v1/tokens", {"name":"x","role":"admin","community":world.community}, token=world.admin))
    await show("decisions", await api.post(f"/api/v1/projects/{p}/decisions", {"stage":"proposal","held_on":past(),"body":"居委会"}, token=t))
    await show("readyz", await api.get("/readyz"))
