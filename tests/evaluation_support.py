"""Helpers of the 共评 and progress-note tests: decisions that open and close the evaluation
window, codes issued through the API, a tally sheet uploaded as an attachment."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from tests.api_support import World, new_key, past


async def decide(world: World, project: str, stage: str, days_ago: int = 5) -> dict[str, Any]:
    """A decision of a waived project (which may enter its trail part-way)."""
    body = {"stage": stage, "held_on": past(days_ago), "body": "居民代表大会" if stage != "closure" else "社区两委"}
    response = await world.api.post(f"/api/v1/projects/{project}/decisions", body, token=world.treasurer)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def issue(world: World, project: str, count: int, *, key: str | None = None) -> dict[str, Any]:
    response = await world.api.post(
        f"/api/v1/projects/{project}/evaluation-codes", {"count": count}, token=world.treasurer, key=key or new_key()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def evaluate(world: World, project: str, code: str, score: int, comment: str | None = None) -> Any:
    body: dict[str, Any] = {"household_code": code, "score": score}
    if comment is not None:
        body["comment"] = comment
    return await world.api.post(f"/api/v1/projects/{project}/evaluations", body)


def tally_sheet_png(shade: int = 200) -> bytes:
    """A photographed tally sheet (a plain image is enough: only its digest matters here)."""
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (shade, shade, shade)).save(out, format="PNG")
    return out.getvalue()


async def upload_png(world: World, project: str, content: bytes) -> str:
    response = await world.api.request(
        "POST",
        f"/api/v1/projects/{project}/attachments",
        content=content,
        headers={"Content-Type": "image/png"},
        token=world.treasurer,
    )
    assert response.status_code == 201, response.text
    return response.json()["sha256"]  # type: ignore[no-any-return]


async def tally(
    world: World, project: str, counts: dict[str, int], sheet_sha256: str, *, method: str = "meeting", days_ago: int = 1
) -> Any:
    body = {"held_on": past(days_ago), "method": method, "counts": counts, "sheet_sha256": sheet_sha256}
    return await world.api.post(
        f"/api/v1/projects/{project}/evaluation-tallies", body, token=world.treasurer, key=new_key()
    )
