"""Chinese labels of the ledger's codes, shared by every public output (sheet, exports, pages,
workspace): the one place display code takes a label from. Labels the ledger itself needs for its
own messages are defined beside their codes in ledger/ and re-exported here."""

from __future__ import annotations

from ledger import kinds
from ledger.decisions import STAGE_LABELS
from ledger.evaluations import METHOD_LABELS as TALLY_METHOD_LABELS
from ledger.evaluations import SCORE_LABELS
from ledger.witnesses import KINDS as WITNESS_KIND_LABELS

__all__ = [
    "ACCOUNT_LABELS",
    "CHANNEL_LABELS",
    "CONTRIBUTOR_TYPE_LABELS",
    "KIND_LABELS",
    "SCORE_LABELS",
    "SOURCE_LABELS",
    "STAGE_LABELS",
    "TALLY_METHOD_LABELS",
    "WITNESS_KIND_LABELS",
    "account_label",
]

KIND_LABELS = kinds.LABELS  # defined with the kinds themselves (ledger/kinds.py)
CHANNEL_LABELS = {"cash": "现金", "wechat": "微信", "alipay": "支付宝", "bank": "银行转账", "other": "其他"}
SOURCE_LABELS = {"crowdfunding": "众筹", "grant": "以奖代补", "collective": "集体资金", "other": "其他"}
CONTRIBUTOR_TYPE_LABELS = {
    "resident": "居民",
    "household": "住户",
    "enterprise": "企业",
    "organization": "组织",
    "party_branch": "党支部",
}
ACCOUNT_LABELS = {
    "cash": "资金（现金及存款）",
    "contributions": "众筹收入",
    "grants": "以奖代补收入",
    "other_income": "其他收入",
    "refunds": "退款",
    "in_kind:received": "出力/实物（备查）",
    "in_kind:contributed": "出力/实物（备查）",
    "pledges:receivable": "认筹（备查）",
    "pledges:promised": "认筹（备查）",
}


def account_label(code: str, category_labels: dict[str, str]) -> str:
    """``expenses:materials`` → ``支出：沥青材料`` with the project's own budget labels."""
    if code.startswith("expenses:"):
        category = code.removeprefix("expenses:")
        return f"支出：{category_labels.get(category, category)}"
    return ACCOUNT_LABELS.get(code, code)
