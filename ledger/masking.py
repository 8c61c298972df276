"""How people appear in every public output (JSON, CSV, XLSX, PDF, pages).

张三 → 张*, 张小三 → 张**, 欧阳小明 → 欧阳** (compound surnames kept), 李 → 李*, Latin names →
first letter + *; enterprises, organisations and party branches in full; anonymous → 匿名 (and no
household); erased → 已注销; households only to building level (3栋2单元501 → 3栋); phones never.
"""

from __future__ import annotations

import re

from ledger.errors import FieldError, ValidationFailed

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


# Personal numbers in free text: mainland mobiles (optionally +86, with spaces or dashes),
# landlines with an area code set apart (027-87654321, 027-8765432, (027)87654321, 0714 6543210)
# and 18-digit 居民身份证号. Each stands alone: never part of a longer run of digits or
# of a decimal amount, so amounts, dates, invoice numbers (04417305) and document numbers
# (下住建〔2026〕12号) are not numbers of people.
_ALONE_BEFORE = r"(?<![0-9A-Za-z.])"
_ALONE_AFTER = r"(?![0-9]|\.[0-9])"
_PERSONAL_NUMBER = re.compile(
    _ALONE_BEFORE
    + r"(?:"
    + r"(?P<mobile>(?:(?:\+|00)?86[\s-]?)?1[3-9][0-9](?:[\s-]?[0-9]){8})"
    + r"|(?P<landline>(?:\(0[1-9][0-9]{1,2}\)|（0[1-9][0-9]{1,2}）|0[1-9][0-9]{1,2}[\s-])\s?[2-9][0-9]{2,3}[\s-]?[0-9]{4})"
    + r"|(?P<id_card>[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx])"
    + r")"
    + _ALONE_AFTER
)
PERSONAL_NUMBER_MESSAGE = "不能包含手机号、固定电话或身份证号"


def contains_phone(text: str | None) -> bool:
    """Text a treasurer types is published verbatim (and often hashed into the ledger): it must
    carry no phone or ID number (the caller refuses it, 422)."""
    return bool(text) and _PERSONAL_NUMBER.search(text) is not None  # type: ignore[arg-type]


# How a refusal names the field to the treasurer who typed it.
FIELD_LABELS = {
    "memo": "备注",
    "description": "说明",
    "reason": "冲正原因",
    "payee": "收款方",
    "payer": "付款方",
    "grantor": "拨款单位",
    "receipt_no": "收据号",
    "invoice_no": "发票号",
    "document_no": "文号",
    "contributor.name": "出资单位名称",
    "body": "会议或机构",
    "summary": "摘要",
    "title": "标题",
    "name": "名称",
    "district": "所在区和街道",
    "label": "预算科目名称",
    "category": "预算科目代码",
    "text": "进展内容",
}


def refuse_personal_numbers(fields: dict[str, str | None]) -> None:
    """ValidationFailed (422) naming every field, of text a treasurer or administrator types for
    publication, that carries a phone or ID number: published or hashed, it could never be taken back."""
    errors = []
    for field, text in fields.items():
        if contains_phone(text):
            label = FIELD_LABELS.get(field.rsplit("]", 1)[-1].lstrip("."), field)
            errors.append(FieldError(field, f"{label}（{field}）{PERSONAL_NUMBER_MESSAGE}：公开内容不得含个人号码"))
    if errors:
        raise ValidationFailed(errors[0].message, errors)


def _mask_number(match: re.Match[str]) -> str:
    # Keep the first three and last four characters that are digits (or the X of an ID), as in
    # 139****5678; separators go, the stars stand for the hidden digits.
    chars = [c for c in match.group(0) if c.isdigit() or c in "Xx"]
    if match.group("mobile") and len(chars) > 11:
        chars = chars[-11:]  # +86 / 0086: the country code carries nothing personal
    return "".join(chars[:3]) + "*" * (len(chars) - 7) + "".join(chars[-4:])


def mask_phones(text: str) -> str:
    """Text a resident writes is kept as written (the community's treasurer and auditor read it);
    every public output shows it with phone and ID numbers masked: 请联系我 139****5678."""
    return _PERSONAL_NUMBER.sub(_mask_number, text)


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
