"""Attachments: content sniffing, EXIF/GPS stripped before hashing, stored once, digests in the
hashed documents, public for expenditures and grants, never for contributions."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

from PIL import Image

from tests.api_support import World, assert_problem, contribution, expenditure, grant, new_key

GPS_IFD = 0x8825


def photo_with_gps(size: tuple[int, int] = (64, 48), fmt: str = "JPEG") -> bytes:
    """A phone photo: EXIF with a camera model and the GPS position of 黄石 (Huangshi)."""
    image = Image.new("RGB", size, (200, 120, 40))
    exif = Image.Exif()
    exif[0x0110] = "Phone X"  # Model
    exif[0x0112] = 1  # Orientation
    exif[GPS_IFD] = {1: "N", 2: (30.0, 12.0, 0.0), 3: "E", 4: (115.0, 2.0, 0.0)}
    out = io.BytesIO()
    image.save(out, format=fmt, exif=exif)
    return out.getvalue()


MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj "
    b"3 0 obj<</Type/Page/MediaBox[0 0 200 200]/Parent 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
)


async def upload(world: World, project: str, content: bytes, media_type: str, **kw: Any) -> Any:
    return await world.api.request(
        "POST",
        f"/api/v1/projects/{project}/attachments",
        content=content,
        headers={"Content-Type": media_type},
        token=kw.pop("token", world.treasurer),
        **kw,
    )


async def test_exif_and_gps_stripped_before_hashing(world: World) -> None:
    project = await world.project()
    original = photo_with_gps()
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD), "the fixture carries GPS"
    response = await upload(world, project, original, "image/jpeg")
    assert response.status_code == 201, response.text
    out = response.json()
    assert out["media_type"] == "image/jpeg" and out["url"] == f"/api/v1/attachments/{out['sha256']}"
    stored = await world.api.get(out["url"], token=world.treasurer)
    assert stored.status_code == 200 and stored.headers["content-type"].startswith("image/jpeg")
    assert hashlib.sha256(stored.content).hexdigest() == out["sha256"] and len(stored.content) == out["size"]
    image = Image.open(io.BytesIO(stored.content))
    assert not image.getexif() and not image.getexif().get_ifd(GPS_IFD)
    assert b"Phone X" not in stored.content and b"Exif" not in stored.content
    assert image.size == (64, 48)
    # The same file again: stored once, same digest.
    again = await upload(world, project, original, "image/jpeg")
    assert again.status_code == 201 and again.json()["sha256"] == out["sha256"]

    png = await upload(world, project, photo_with_gps(fmt="PNG"), "image/png")
    assert png.status_code == 201, png.text
    stored = await world.api.get(png.json()["url"], token=world.treasurer)
    assert not Image.open(io.BytesIO(stored.content)).getexif()


async def test_content_must_match_its_type(world: World) -> None:
    project = await world.project()
    png = photo_with_gps(fmt="PNG")
    assert_problem(await upload(world, project, png, "application/pdf"), 415, "unsupported_media_type")
    assert_problem(await upload(world, project, MINIMAL_PDF, "image/jpeg"), 415, "unsupported_media_type")
    assert_problem(await upload(world, project, b"hello", "text/plain"), 415, "unsupported_media_type")
    truncated = photo_with_gps()[:200]
    assert_problem(await upload(world, project, truncated, "image/jpeg"), 415, "unsupported_media_type")
    too_big = MINIMAL_PDF + b"0" * (10 * 1024 * 1024)
    assert_problem(await upload(world, project, too_big, "application/pdf"), 413, "payload_too_large")
    pdf = await upload(world, project, MINIMAL_PDF, "application/pdf")
    assert pdf.status_code == 201 and pdf.json()["sha256"] == hashlib.sha256(MINIMAL_PDF).hexdigest()


async def test_who_may_upload_and_idempotency(world: World) -> None:
    project = await world.project()
    for token, status, code in (
        (None, 401, "unauthorized"),
        (world.auditor, 403, "forbidden"),
        (world.tokens["treasurer_other"], 403, "forbidden"),
    ):
        response = await world.api.request(
            "POST",
            f"/api/v1/projects/{project}/attachments",
            content=MINIMAL_PDF,
            headers={"Content-Type": "application/pdf"},
            token=token,
        )
        assert_problem(response, status, code)
    key = new_key()
    first = await upload(world, project, MINIMAL_PDF + b"%1\n", "application/pdf", key=key)
    replay = await upload(world, project, MINIMAL_PDF + b"%1\n", "application/pdf", key=key)
    assert replay.content == first.content and replay.headers["idempotent-replayed"] == "true"
    other = await upload(world, project, MINIMAL_PDF + b"%2\n", "application/pdf", key=key)
    assert_problem(other, 422, "idempotency_key_reused")


async def test_digests_in_documents_and_public_by_kind(world: World) -> None:
    project = await world.project(countersign_over="0")
    receipt = (await upload(world, project, photo_with_gps((30, 30)), "image/jpeg")).json()["sha256"]
    invoice = (await upload(world, project, MINIMAL_PDF + b"%invoice\n", "application/pdf")).json()["sha256"]
    approval = (await upload(world, project, MINIMAL_PDF + b"%pw\n", "application/pdf")).json()["sha256"]

    paid = await world.entry(project, contribution(amount="5000", attachments=[receipt]))
    assert json.loads(paid["document"])["attachments"] == [receipt]
    granted = await world.entry(project, grant(attachments=[approval]))
    assert json.loads(granted["document"])["attachments"] == [approval]

    # A contribution's receipt is never public; the community's staff still read it.
    assert_problem(await world.api.get(f"/api/v1/attachments/{receipt}"), 404, "not_found")
    assert_problem(
        await world.api.get(f"/api/v1/attachments/{receipt}", token=world.tokens["treasurer_other"]), 404, "not_found"
    )
    assert (await world.api.get(f"/api/v1/attachments/{receipt}", token=world.auditor)).status_code == 200
    # A grant's 批文: public.
    assert (await world.api.get(f"/api/v1/attachments/{approval}")).status_code == 200

    # The invoice is not public while its voucher waits; it is once the payment is recorded.
    voucher = await world.api.post(
        f"/api/v1/projects/{project}/vouchers",
        expenditure("1200", attachments=[invoice]),
        token=world.treasurer,
        key=new_key(),
    )
    assert voucher.status_code == 201, voucher.text
    assert voucher.json()["attachments"] == [invoice]
    assert_problem(await world.api.get(f"/api/v1/attachments/{invoice}"), 404, "not_found")
    approved = await world.api.post(f"/api/v1/vouchers/{voucher.json()['id']}/approve", token=world.auditor)
    assert approved.status_code == 201, approved.text
    document = json.loads(approved.json()["entry"]["document"])
    assert document["attachments"] == [invoice]
    public = await world.api.get(f"/api/v1/attachments/{invoice}")
    assert public.status_code == 200 and public.content == MINIMAL_PDF + b"%invoice\n"
    assert public.headers["content-type"].startswith("application/pdf")
    assert (await world.api.get(f"/api/v1/projects/{project}/ledger/verify")).json()["ok"] is True

    # The resident's entry page links the invoice.
    page = await world.api.get(f"/p/{project}/e/{approved.json()['entry']['seq']}")
    assert f'href="/api/v1/attachments/{invoice}"' in page.text
    assert "审核人" in page.text and "经办人" in page.text
    contribution_page = await world.api.get(f"/p/{project}/e/{paid['seq']}")
    assert "/api/v1/attachments/" not in contribution_page.text


async def test_unknown_or_foreign_digest_refused(world: World) -> None:
    project = await world.project()
    foreign = await world.project(community=world.other_community)
    theirs = (
        await upload(
            world, foreign, MINIMAL_PDF + b"%theirs\n", "application/pdf", token=world.tokens["treasurer_other"]
        )
    ).json()["sha256"]
    for digest in ("0" * 64, theirs):
        response = await world.api.post(
            f"/api/v1/projects/{project}/entries",
            contribution(attachments=[digest]),
            token=world.treasurer,
            key=new_key(),
        )
        body = assert_problem(response, 422, "validation_failed")
        assert "attachments" in {e["field"] for e in body["errors"]}
    response = await world.api.post(
        f"/api/v1/projects/{project}/entries",
        contribution(attachments=["NOT-A-DIGEST"]),
        token=world.treasurer,
        key=new_key(),
    )
    assert_problem(response, 422, "validation_failed")
    assert_problem(await world.api.get("/api/v1/attachments/" + "0" * 64), 404, "not_found")
