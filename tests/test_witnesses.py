"""Witnesses (见证): keys made and checkpoints signed by the `ledger witness` command, offline,
verified and kept by the service; refused when the root or the key differs; C2SP formats read
back; the cosignatures listed by the API, /d/{id} and the sheets published after them."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ledger import witnesses as w
from tests.api_support import LiveServer, World, assert_problem, contribution, new_key, unique
from tests.conftest import Database
from tests.test_disclosures import pdf_text, period

LEDGER = str(Path(sys.executable).with_name("ledger"))
ORIGIN_HOST = "127.0.0.1:8000"  # the test app's LEDGER_PUBLIC_BASE_URL, without its scheme


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a witness runs it: no database, no service settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return subprocess.run([LEDGER, "witness", *args], capture_output=True, text=True, input=stdin, env=env, timeout=60)


def keygen(tmp_path: Path, name: str) -> tuple[Path, str, str]:
    """A key file, the raw public key (base64) and the vkey, as printed."""
    key = tmp_path / f"{unique('key')}.txt"
    done = cli("keygen", "--name", name, "-o", str(key))
    assert done.returncode == 0, done.stderr
    raw = re.search(r"公钥（登记用，base64）：(\S+)", done.stdout)
    vkey = re.search(r"验证密钥（vkey）：(\S+)", done.stdout)
    assert raw and vkey, done.stdout
    return key, raw.group(1), vkey.group(1)


async def register(world: World, name: str, public_key: str, kind: str | None = "owners_committee") -> dict[str, Any]:
    body = {"name": name, "public_key": public_key, **({"kind": kind} if kind else {})}
    response = await world.api.post(f"/api/v1/communities/{world.community}/witnesses", body, token=world.admin)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def sheet(world: World, project: str) -> dict[str, Any]:
    response = await world.api.post(
        f"/api/v1/projects/{project}/disclosures", {**period(), "notice_days": 7}, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def checkpoint(world: World, disclosure_id: int) -> str:
    response = await world.api.get(f"/api/v1/disclosures/{disclosure_id}/checkpoint")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def test_the_signed_note_example_of_the_c2sp_spec_verifies() -> None:
    """signed-note.md's own example: vkey, key ID and Ed25519 signature as the spec gives them."""
    public = w.parse_public_key(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "example.com/foo"
    )
    line = "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM="
    signed = base64.b64decode(line)
    assert w.key_id("example.com/foo", public) == signed[:4] == bytes.fromhex("530d903a")
    assert w.verifies("This is an example message.\n", public, signed[4:])
    assert not w.verifies("This is an example message!\n", public, signed[4:])


async def test_a_witness_signs_offline_and_the_service_keeps_the_cosignature(world: World, tmp_path: Path) -> None:
    name = f"锦绣花园业委会{unique('w')[-6:]}"
    key, raw, vkey = keygen(tmp_path, name)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert cli("keygen", "--name", name, "-o", str(key)).returncode != 0, "an existing key is never overwritten"
    registered = await register(world, name, raw)
    assert registered["vkey"] == vkey and registered["kind_label"] == "业委会"
    assert registered["key_id"] == vkey.split("+", 2)[1]  # base64 may hold "+" too

    project = await world.project()
    await world.entry(project, contribution("200"))
    published = await sheet(world, project)
    text = await checkpoint(world, published["id"])
    root64 = base64.b64encode(bytes.fromhex(published["root_hash"])).decode()
    assert text == f"{ORIGIN_HOST}/p/{project}\n{published['tree_size']}\n{root64}\n"
    assert published["checkpoint_url"] == f"/api/v1/disclosures/{published['id']}/checkpoint"

    # The witness compares the checkpoint with the paper sheet; a different root is not signed.
    source = tmp_path / "checkpoint.txt"
    source.write_text(text, encoding="utf-8")
    refused = cli("sign", "--key", str(key), "--root", "00" * 32, str(source))
    assert refused.returncode == 2 and "不签" in refused.stderr
    grouped_root = " ".join(re.findall("....", published["root_hash"]))  # as printed on paper
    note = cli("sign", "--key", str(key), "--root", grouped_root, "--size", str(published["tree_size"]), str(source))
    assert note.returncode == 0, note.stderr
    body_text, _, lines = note.stdout.partition("\n\n")
    assert body_text + "\n" == text and re.fullmatch(rf"— {re.escape(name)} [A-Za-z0-9+/]{{91}}=\n", lines), lines
    posted = json.loads(cli("sign", "--key", str(key), "--json", str(source)).stdout)
    assert posted["witness"] == name

    created = await world.api.post(f"/api/v1/disclosures/{published['id']}/cosignatures", posted)
    assert created.status_code == 201, created.text
    assert created.json()["line"] == lines and created.json()["witness"]["name"] == name
    # The same signature again: kept once.
    again = await world.api.post(f"/api/v1/disclosures/{published['id']}/cosignatures", posted)
    assert again.status_code == 200 and again.json()["line"] == lines
    # The signature line as it appears in the note (key ID first) is accepted too.
    as_line = {"witness": name, "signature": lines.split()[-1]}
    assert (await world.api.post(f"/api/v1/disclosures/{published['id']}/cosignatures", as_line)).status_code == 200

    # The checkpoint is now a signed note that a C2SP verifier with the witness's vkey accepts.
    signed = await checkpoint(world, published["id"])
    assert signed == text + "\n" + lines
    note_text, _, sig_lines = signed.rpartition("\n\n")
    key_name, key_hex, key_b64 = vkey.split("+", 2)
    sig = base64.b64decode(sig_lines.split()[-1])
    public = base64.b64decode(key_b64)[1:]
    assert sig[:4].hex() == key_hex and w.verifies(note_text + "\n", public, sig[4:]) and key_name == name

    listed = (await world.api.get(f"/api/v1/disclosures/{published['id']}")).json()["cosignatures"]
    assert [c["witness"]["name"] for c in listed] == [name]
    assert (await world.api.get(f"/api/v1/disclosures/{published['id']}/cosignatures")).json()["items"] == listed
    in_list = (await world.api.get(f"/api/v1/projects/{project}/disclosures")).json()["items"][0]["cosignatures"]
    assert in_list == listed

    # /d/{id} lists the witness; the sheet published next prints the cosigned earlier sheet.
    page = (await world.api.get(f"/d/{published['id']}")).text
    assert name in page and registered["key_id"] in page and "见证签名" in page
    await world.entry(project, contribution("300"))
    later = await sheet(world, project)
    pdf = (await world.api.get(later["pdf_url"])).content
    flat = re.sub(r"\s+", "", pdf_text(pdf, tmp_path))
    assert f"第1期（记录数{published['tree_size']}）：{name}（业委会）" in flat, flat[-1500:]


async def test_signatures_over_another_root_or_by_another_key_are_refused(world: World, tmp_path: Path) -> None:
    name = f"锦绣社区居委会{unique('w')[-6:]}"
    key, raw, _ = keygen(tmp_path, name)
    await register(world, name, raw, kind="residents_committee")
    project = await world.project()
    await world.entry(project, contribution("200"))
    first = await sheet(world, project)
    await world.entry(project, contribution("300"))
    second = await sheet(world, project)

    source = tmp_path / "first.txt"
    source.write_text(await checkpoint(world, first["id"]), encoding="utf-8")
    over_first = json.loads(cli("sign", "--key", str(key), "--json", str(source)).stdout)
    # Posted to the second sheet: signed over another root (and size).
    refused = await world.api.post(f"/api/v1/disclosures/{second['id']}/cosignatures", over_first)
    assert "signature" in {e["field"] for e in assert_problem(refused, 422, "validation_failed")["errors"]}

    # Made by a key that is not the registered one, under the registered name.
    stranger, _, _ = keygen(tmp_path, name)
    forged = json.loads(cli("sign", "--key", str(stranger), "--json", str(source)).stdout)
    assert_problem(
        await world.api.post(f"/api/v1/disclosures/{first['id']}/cosignatures", forged), 422, "validation_failed"
    )
    # A name nobody registered in this community.
    unknown = {"witness": "无名氏", "signature": over_first["signature"]}
    problem = assert_problem(
        await world.api.post(f"/api/v1/disclosures/{first['id']}/cosignatures", unknown), 422, "validation_failed"
    )
    assert "witness" in {e["field"] for e in problem["errors"]}
    for bad in ({"witness": name, "signature": "not base64!" * 8}, {"witness": name, "signature": "A" * 88}):
        assert_problem(
            await world.api.post(f"/api/v1/disclosures/{first['id']}/cosignatures", bad), 422, "validation_failed"
        )
    assert_problem(await world.api.post("/api/v1/disclosures/999999999/cosignatures", over_first), 404, "not_found")
    # The genuine one still goes in, and only it is listed.
    assert (await world.api.post(f"/api/v1/disclosures/{first['id']}/cosignatures", over_first)).status_code == 201
    assert (await world.api.get(f"/api/v1/disclosures/{second['id']}/cosignatures")).json()["items"] == []


async def test_registering_witnesses(world: World, tmp_path: Path, database: Database) -> None:
    name = f"团城山街道{unique('w')[-6:]}"
    _, raw, vkey = keygen(tmp_path, name)
    for token in (world.treasurer, world.auditor):
        denied = await world.api.post(
            f"/api/v1/communities/{world.community}/witnesses", {"name": name, "public_key": raw}, token=token
        )
        assert denied.status_code == 403
    by_vkey = await register(world, name, vkey, kind="street")
    assert by_vkey["public_key"] == raw
    taken = await world.api.post(
        f"/api/v1/communities/{world.community}/witnesses", {"name": name, "public_key": raw}, token=world.admin
    )
    assert_problem(taken, 409, "conflict")
    _, other_raw, other_vkey = keygen(tmp_path, "另一个名字")
    for body in (
        {"name": "有 空格", "public_key": other_raw},
        {"name": "a+b", "public_key": other_raw},
        {"name": "监督委员会", "public_key": base64.b64encode(b"x" * 31).decode() + "AAAA"},
        {"name": "监督委员会", "public_key": other_vkey},  # a vkey made for another name
        {"name": "监督委员会", "public_key": other_raw, "kind": "mayor"},
    ):
        response = await world.api.post(f"/api/v1/communities/{world.community}/witnesses", body, token=world.admin)
        assert_problem(response, 422, "validation_failed")
    listed = (await world.api.get(f"/api/v1/communities/{world.community}/witnesses")).json()["items"]
    assert name in [x["name"] for x in listed]
    owner = await asyncpg.connect(database.urls.owner.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement in ("UPDATE witnesses SET public_key = public_key", "DELETE FROM cosignatures"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await owner.execute(statement)
    finally:
        await owner.close()


def test_the_command_signs_a_checkpoint_fetched_from_the_service(live_server: LiveServer, tmp_path: Path) -> None:
    """`ledger witness sign URL`: the content of the service's checkpoint URL (here a sheet that
    does not exist: the command reports the error and signs nothing)."""
    key, _, _ = keygen(tmp_path, "见证人")
    missing = cli("sign", "--key", str(key), f"{live_server.base_url}/api/v1/disclosures/999999999/checkpoint")
    assert missing.returncode == 2 and "错误" in missing.stderr
    ok = cli(
        "sign", "--key", str(key), "-", stdin="example.org/p/x\n3\n" + base64.b64encode(b"\1" * 32).decode() + "\n"
    )
    assert ok.returncode == 0 and ok.stdout.startswith("example.org/p/x\n3\n")


def test_key_texts_read_back_whatever_their_base64_holds() -> None:
    """Base64 may contain "+", the separator of vkeys and key files: 200 keys read back."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    for _ in range(200):
        private = Ed25519PrivateKey.generate()
        name, again = w.parse_private_key(w.private_key_text("锦绣花园业委会", private))
        public = w.public_bytes(private)
        assert name == "锦绣花园业委会" and w.public_bytes(again) == public
        assert w.parse_public_key(w.vkey(name, public), name) == public
        assert w.parse_public_key(w.b64(public), name) == public


def test_the_browser_code_verifies_a_cosignature_made_by_the_command(tmp_path: Path) -> None:
    """api/static/cosign.js under Node's test runner, with WebCrypto and with @noble/curves."""
    import shutil

    key, raw, _ = keygen(tmp_path, "锦绣花园业委会")
    root = bytes(range(32))
    text = w.checkpoint_text("127.0.0.1:8000/p/jinxiu-road-2026", 41, root)
    note = cli("sign", "--key", str(key), "-", stdin=text)
    assert note.returncode == 0, note.stderr
    case = {"name": "锦绣花园业委会", "public_key": raw, "note": note.stdout, "size": 41, "root_hex": root.hex()}
    (tmp_path / "case.json").write_text(json.dumps(case, ensure_ascii=False), encoding="utf-8")
    root_dir = Path(__file__).resolve().parents[1]
    shutil.copytree(root_dir / "api" / "static", tmp_path / "static")
    shutil.copy(root_dir / "tests" / "js" / "cosign.test.mjs", tmp_path / "cosign.test.mjs")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    run = subprocess.run(
        ["node", "--test", "cosign.test.mjs"],
        cwd=tmp_path,
        env={**os.environ, "COSIGN_CASE": str(tmp_path / "case.json")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "# fail 0" in run.stdout and "# pass 2" in run.stdout, (
        run.stdout[-3000:] + run.stderr
    )
