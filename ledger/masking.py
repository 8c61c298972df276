"""How people appear in every public output (JSON, CSV, XLSX, PDF, pages).

张三 → 张*, 张小三 → 张**, 欧阳小明 → 欧阳** (compound surnames kept), 李 → 李*, Latin names →
first letter + *; enterprises, organisations and party branches in full; anonymous → 匿名 (and no
household); erased → 已注销; households only to building level (3栋2单元501 → 3栋); phones never.
"""

from __future__ import annotations

import re

ANONYMOUS = "匿名"
ERASED = "已注销"
ORGANISATION_TYPES = frozenset({"enterprise", "organization", "party_branch"})

# Two-character surnames (复姓) in use today; kept whole when masking.
COMPOUND_SURNAMES = frozenset(
    (
        "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 司空 夏侯 轩辕 令狐 端木 独孤 南宫 西门 "
        "百里 呼延 闻人 澹台 公冶 太史 申屠 赫连 钟离 濮阳 淳于 单于 拓跋 第五 万俟 东郭 巫马 公西 漆雕 乐正 "
        "壤驷 公良 宰父 谷梁 段干 东门 梁丘 左丘 子车 颛孙 羊舌 微生 公羊 亓官 司寇 鲜于 闾丘 仲孙 叔孙 即墨 "
        "褚师 夹谷 拓拔 "
    ).split()
)
_BUILDING = re.compile(r"^\s*([0-9A-Za-z一二三四五六七八九十百零〇甲乙丙丁东西南北-]{1,8}\s*(?:号楼|栋|幢|座|楼|#))")


# A mainland mobile number standing alone (not part of a longer digit string).
_MOBILE = re.compile(r"(?<!\d)1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")


def contains_phone(text: str | None) -> bool:
    """Free text that is published verbatim (and hashed into the ledger) must carry no phone."""
    return bool(text) and _MOBILE.search(text) is not None  # type: ignore[arg-type]


def mask_phones(text: str) -> str:
    """Free text a resident typed (an objection) may carry a phone: 13812345678 → 138****5678."""
    return _MOBILE.sub(lambda m: m[0][:3] + "****" + m[0][-4:], text)


def mask_person_name(name: str) -> str:
    name = name.strip()
    if not name:
        return "*"
    if name[0].isascii():
        return name[0] + "*"
    if len(name) > 2 and name[:2] in COMPOUND_SURNAMES:
        return name[:2] + "*" * (len(name) - 2)
    if len(name) == 1:
        return name + "*"
    return name[0] + "*" * (len(name) - 1)


def public_name(name: str | None, contributor_type: str, *, anonymous: bool, erased: bool) -> str:
    if erased or name is None:
        return ERASED
    if anonymous:
        return ANONYMOUS
    if contributor_type in ORGANISATION_TYPES:
        return name
    return mask_person_name(name)


def public_contributor(
    name: str | None, household: str | None, contributor_type: str, *, anonymous: bool, erased: bool
) -> tuple[str, str | None]:
    """Name and building as every public output shows a contributor. An anonymous gift shows
    neither, not even after erasure: its building, or 已注销 beside an erased giver's other
    entries, would narrow the giver down."""
    if anonymous:
        return ANONYMOUS, None
    if erased or name is None:
        return ERASED, None
    return public_name(name, contributor_type, anonymous=False, erased=False), public_household(household)


def public_household(household: str | None) -> str | None:
    """Only the building: 3栋2单元501 → 3栋, 12号楼3-201 → 12号楼; nothing if no building is named."""
    if not household:
        return None
    match = _BUILDING.match(household)
    return match.group(1).replace(" ", "") if match else None
