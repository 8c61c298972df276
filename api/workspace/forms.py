"""One form per entry kind, built from — and validated by — the API's own request schemas, so a
treasurer sees the same rules and the same Chinese messages as a script would, next to the field."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from api.errors import validation_errors
from ledger import kinds
from ledger.errors import LedgerError
from reports.labels import CHANNEL_LABELS, CONTRIBUTOR_TYPE_LABELS

FORM_KINDS = kinds.NAMES  # every kind has its form (FIELDS, checked by tests/test_kinds.py)
# Kinds whose form carries a file (发票, 批文): their attachments are public.
FILE_KINDS = ("expenditure", "grant")


@dataclass(frozen=True)
class Field:
    name: str  # the API's field path: "amount", "contributor.name"
    label: str
    kind: str = "text"  # text | money | date | select | checkbox | textarea | number
    required: bool = False
    hint: str = ""
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return "f-" + self.name.replace(".", "-")


AMOUNT = Field("amount", "金额（元）", "money", True, "如 200 或 1234.50")
DATE = Field("occurred_on", "发生日期", "date", True)
MEMO = Field("memo", "说明", "textarea")
CHANNEL = Field("channel", "方式", "select", choices=tuple(CHANNEL_LABELS.items()))
WHO = (
    Field("contributor.name", "姓名或单位名称", required=True),
    Field("contributor.household", "房号", hint="如 3栋2单元501；公开时只显示到楼栋"),
)

FIELDS: dict[str, tuple[Field, ...]] = {
    "contribution": (
        AMOUNT,
        DATE,
        *WHO,
        Field("contributor.type", "出资人类型", "select", choices=tuple(CONTRIBUTOR_TYPE_LABELS.items())),
        Field("contributor.anonymous", "匿名公示", "checkbox", hint="公示表和网页上显示为“匿名”"),
        CHANNEL,
        Field("receipt_no", "收据号"),
        Field(
            "pledge", "兑现的认筹（记账序号）", "number", hint="这笔钱兑现此前登记的认筹时填写；不填则不计入认筹实缴"
        ),
        MEMO,
    ),
    "grant": (
        AMOUNT,
        DATE,
        Field("grantor", "拨付单位", required=True),
        Field("document_no", "文号", hint="如 下住建〔2026〕12号"),
        MEMO,
    ),
    "expenditure": (
        AMOUNT,
        DATE,
        Field("payee", "收款单位", required=True),
        Field("category", "预算科目", "select", True),
        Field("invoice_no", "发票号"),
        MEMO,
    ),
    "refund": (AMOUNT, DATE, *WHO, CHANNEL, MEMO),
    "other_income": (
        AMOUNT,
        DATE,
        Field("payer", "付款方", required=True, hint="如 开户银行（利息）、余料买方"),
        MEMO,
    ),
    "in_kind": (
        Field("amount", "折合金额（元）", "money", True),
        DATE,
        *WHO,
        Field("description", "内容", "textarea", True, "如 义务劳动 6 小时"),
        MEMO,
    ),
    "pledge": (AMOUNT, DATE, *WHO, MEMO),
    "reversal": (
        Field("reverses", "被冲正的记账序号", "number", True),
        DATE,
        Field("reason", "冲正原因", "textarea", True),
    ),
}


@dataclass
class FormState:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def add(self, name: str, message: str, fields: tuple[Field, ...]) -> None:
        names = {f.name for f in fields}
        if name in names:
            self.errors.setdefault(name, []).append(message)
        elif name.startswith("contributor") and "contributor.name" in names:
            self.errors.setdefault("contributor.name", []).append(message)
        else:
            self.general.append(message)

    def add_ledger_error(self, exc: LedgerError, fields: tuple[Field, ...]) -> None:
        if exc.errors:
            for e in exc.errors:
                self.add(e.field, e.message, fields)
        else:
            self.general.append(exc.detail)


def body_from_form(kind: str, form: dict[str, Any], fields: tuple[Field, ...]) -> tuple[dict[str, Any], FormState]:
    """The API request body the form stands for (empty inputs left out, as a script would)."""
    state = FormState()
    body: dict[str, Any] = {"kind": kind}
    for f in fields:
        raw = form.get(f.name)
        text = raw.strip() if isinstance(raw, str) else ""
        state.values[f.name] = text
        value: Any = text
        if f.kind == "checkbox":
            value = bool(text)
            state.values[f.name] = "on" if value else ""
        elif not text:
            continue
        elif f.kind == "number":
            value = int(text) if text.isdigit() and len(text) <= 18 else text
        target = body
        *parents, leaf = f.name.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return body, state


def validate(model: type[BaseModel], body: dict[str, Any], state: FormState, fields: tuple[Field, ...]) -> Any:
    """The parsed body, exactly as the API parses a request (JSON mode: money only as a string),
    or None with the API's messages put next to their fields."""
    try:
        return model.model_validate_json(json.dumps(body, ensure_ascii=False))
    except ValidationError as exc:
        for e in validation_errors(exc):
            state.add(e["field"], e["message"], fields)
        return None
