"""Chinese labels of the ledger's codes, shared by every public output (sheet, exports, pages)."""

from __future__ import annotations

KIND_LABELS = {
    "contribution": "众筹出资",
    "grant": "以奖代补",
    "expenditure": "支出",
    "refund": "退款",
    "in_kind": "出力/实物",
    "pledge": "认筹",
    "reversal": "冲正",
    "other_income": "其他收入",
}
CHANNEL_LABELS = {"cash": "现金", "wechat": "微信", "alipay": "支付宝", "bank": "银行转账", "other": "其他"}
SOURCE_LABELS = {"crowdfunding": "众筹", "grant": "以奖代补", "collective": "集体资金", "other": "其他"}
CONTRIBUTOR_TYPE_LABELS = {
    "resident": "居民",
    "household": "住户",
    "enterprise": "企业",
    "organization": "组织",
    "party_branch": "党支部",
}
