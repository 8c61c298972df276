"""A project for the resident page tests: money of every kind, a reversal, anonymous and erased
contributors, hostile memos, and two published sheets with entries between them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any

from ledger.communities import get_community
from ledger.contributors import erase_contributor
from tests.api_support import (
    World,
    contribution,
    expenditure,
    grant,
    in_kind,
    new_key,
    pledge,
    refund,
    reversal,
    today,
)

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
PAGE_BYTES_MAX = 60 * 1024


@dataclass
class Seeded:
    project: str
    community: str
    sheets: list[dict[str, Any]]
    hostile_seq: int
    reversal_seq: int
    erased_seq: int
    anonymous_seq: int


async def publish(world: World, project: str) -> dict[str, Any]:
    body = {
        "period_start": (today() - timedelta(days=30)).isoformat(),
        "period_end": today().isoformat(),
        "notice_days": 7,
    }
    response = await world.api.post(
        f"/api/v1/projects/{project}/disclosures", body, token=world.treasurer, key=new_key()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def seed(world: World) -> Seeded:
    policy = {
        "code": f"policy-{uuid.uuid4().hex[:8]}",
        "name": "下陆区共同缔造以奖代补办法",
        "issuer": "下陆区住房和城乡建设局",
    }
    response = await world.api.post(
        "/api/v1/award-policies", {**policy, "rate": "0.5", "cap": "100000"}, token=world.admin
    )
    assert response.status_code == 201, response.text
    project = await world.project(award_policy=policy["code"])
    await world.entry(project, contribution("200", "张三", "3栋2单元501"))
    await world.entry(project, contribution("500", "欧阳小明", "5栋1单元302"))
    anonymous = await world.entry(project, contribution("300", "钱七", "7栋1单元101", anonymous=True))
    await world.entry(project, contribution("1000", "黄石某物业服务有限公司", None, type_="enterprise"))
    await world.entry(project, grant("50000"))
    await world.entry(project, pledge("500", "王五"))
    erased = await world.entry(project, in_kind("300", "赵六"))
    async with world.engine.connect() as conn:
        community = await get_community(conn, world.community)
    await erase_contributor(world.engine, community.id, uuid.UUID(erased["contributor"]["id"]))
    first = await publish(world, project)
    await world.entry(project, expenditure("1200.35"))
    spent = await world.entry(project, expenditure("99", payee="某五金店"))
    undo = await world.entry(project, reversal(spent["seq"], reason="金额录入错误"))
    hostile = await world.entry(
        project, contribution("88.80", "李四", "4栋", memo=HOSTILE[0] + HOSTILE[1], receipt_no=HOSTILE[1][:30])
    )
    await world.entry(project, refund("50", {"name": "张三", "household": "3栋2单元501"}))
    second = await publish(world, project)
    return Seeded(
        project=project,
        community=world.community,
        sheets=[first, second],
        hostile_seq=hostile["seq"],
        reversal_seq=undo["seq"],
        erased_seq=erased["seq"],
        anonymous_seq=anonymous["seq"],
    )


def page_paths(seeded: Seeded) -> list[str]:
    """Every page of the page map, for this project."""
    p = seeded.project
    return [
        "/",
        f"/c/{seeded.community}",
        f"/p/{p}",
        f"/p/{p}/entries",
        f"/p/{p}/entries?kind=contribution",
        f"/p/{p}/pledges",
        f"/p/{p}/progress",
        f"/p/{p}/e/1",
        f"/p/{p}/e/{seeded.hostile_seq}",
        f"/p/{p}/e/{seeded.reversal_seq}",
        f"/p/{p}/check",
        f"/d/{seeded.sheets[0]['id']}",
        f"/d/{seeded.sheets[1]['id']}",
    ]


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def scan(html: str) -> _Scan:
    parser = _Scan()
    parser.feed(html)
    return parser


def text_of(html: str) -> str:
    """The visible text, roughly: tags dropped, entities left as they are."""
    return re.sub(r"<[^>]+>", " ", html)
