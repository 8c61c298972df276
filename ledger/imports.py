"""Importing a treasurer's spreadsheet: a dry run that shows every problem, then one all-or-nothing
commit through the ledger's batch append.

1. :func:`prepare_import` (no database; CPU, so callers run it in a thread) reads the file
   (ledger/spreadsheet.py), turns every data row into an entry draft and collects every problem
   as ``{row, column, message}`` in Chinese (第 12 行「金额」: 无法识别 "两百"), including a 合计
   row that does not match the rows above it.
2. :func:`run_import` refuses a file whose content was already imported into the project (409,
   naming the earlier import), then hands the drafts to ``append_entries``: with ``dry_run`` it
   checks them exactly as a real append would (cash, spending gate, budget lines, refunds) and
   rolls back; otherwise it records them all, with the import's mark in the same transaction
   (the database refuses a second mark for the same content), under the caller's idempotency key.

Every kind a treasurer records directly (ledger/kinds.py RECORDED) can be imported; a reversal
cannot (it names an entry already recorded). Contributors' names appear in the treasurer's own preview and in nothing public.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ledger import kinds, pg
from ledger.canonical import SHANGHAI
from ledger.contributors import ContributorRef
from ledger.drafts import EARLIEST_DATE, EntryDraft
from ledger.entries import AppendResult, append_entries
from ledger.entry_reads import RecordedEntry
from ledger.errors import Conflict, FieldError, LedgerError, ValidationFailed
from ledger.idempotency import IdempotencyRequest
from ledger.import_values import CellError, amount_from_cell, date_from_cell, text_from_cell
from ledger.masking import PERSONAL_NUMBER_MESSAGE, contains_phone
from ledger.money import format_fen_grouped
from ledger.projects import Project
from ledger.spreadsheet import FIELD_LABELS, Problem, Progress, SheetRow, Table, normalise_header, read_table

IMPORT_KINDS = kinds.RECORDED
KIND_LABELS = {k: kinds.get(k).short_label for k in IMPORT_KINDS}
# What people write in the 类型 column.
KIND_WORDS = {
    **{label: kind for kind, label in KIND_LABELS.items()},
    **{kind: kind for kind in IMPORT_KINDS},
    "出资": "contribution",
    "众筹出资": "contribution",
    "捐款": "contribution",
    "奖补": "grant",
    "奖补资金": "grant",
    "补助": "grant",
    "投工投劳": "in_kind",
    "认捐": "pledge",
    "利息": "other_income",
    "利息收入": "other_income",
}
CHANNEL_WORDS = {
    "微信": "wechat",
    "微信支付": "wechat",
    "微信转账": "wechat",
    "微信红包": "wechat",
    "支付宝": "alipay",
    "现金": "cash",
    "银行转账": "bank",
    "转账": "bank",
    "银行": "bank",
    "银行卡": "bank",
    "对公转账": "bank",
    "其他": "other",
    **{c: c for c in ("wechat", "alipay", "cash", "bank", "other")},
}
CONTRIBUTOR_KINDS = frozenset(kinds.CONTRIBUTOR_KINDS)
# Columns each kind takes besides 日期, 金额, 类型 and 备注 (as the API's schemas do).
KIND_FIELDS: dict[str, frozenset[str]] = {
    "contribution": frozenset(("name", "household", "phone", "channel", "receipt_no")),
    "refund": frozenset(("name", "household", "phone", "channel")),
    "in_kind": frozenset(("name", "household", "phone", "description")),
    "pledge": frozenset(("name", "household", "phone")),
    "grant": frozenset(("grantor", "document_no")),
    "expenditure": frozenset(("payee", "category", "invoice_no")),
    "other_income": frozenset(("payer",)),
}
COMMON_FIELDS = frozenset(("occurred_on", "amount", "kind", "memo"))
# 方式 says how money moved; for a grant or a payment the ledger does not record it: not an error.
QUIETLY_DROPPED = frozenset(("channel",))
TEXT_LIMITS = {
    "name": 100,
    "household": 100,
    "phone": 30,
    "memo": 500,
    "receipt_no": 64,
    "invoice_no": 64,
    "payee": 200,
    "payer": 200,
    "grantor": 200,
    "document_no": 100,
    "description": 500,
}
PUBLIC_TEXT = ("memo", "description", "payee", "payer", "grantor", "receipt_no", "invoice_no", "document_no")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Names that are plainly not a person's: published in full, as organisations are (masking.py).
_PARTY = ("党支部", "党总支", "党委")
_ENTERPRISE = ("公司", "厂", "商行", "超市", "门市部")
_ORGANISATION = ("委员会", "居委会", "村委会", "业委会", "协会", "商会", "物业", "学校", "医院", "中心")
EXAMPLE_MARK = "示例：导入前请删除"
PREVIEWS_MAX = 50
# Ledger fields (as errors name them) → the spreadsheet field whose column the treasurer fixes.
_LEDGER_FIELD = {
    "contributor": "name",
    "contributor.id": "name",
    "contributor.name": "name",
    "contributor.household": "household",
    "reverses": "kind",
    "reason": "memo",
}


@dataclass(frozen=True)
class ImportRow:
    row: int  # in the file
    draft: EntryDraft


@dataclass
class ImportReport:
    """What a file would record, and every problem with it."""

    file_sha256: str
    table: Table
    rows: list[ImportRow]
    problems: list[Problem]
    data_rows: int  # rows of data (title, header, blank and 合计 rows excluded)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        """kind → (count, fen) of the rows that would be recorded."""
        out: dict[str, tuple[int, int]] = {}
        for r in self.rows:
            count, fen = out.get(r.draft.kind, (0, 0))
            out[r.draft.kind] = (count + 1, fen + (r.draft.amount_fen or 0))
        return out

    def column(self, name: str) -> str:
        return self.table.header_of(name)


class ImportRefused(ValidationFailed):
    """A committed import with any problem records nothing (API.md: 422 with the problems)."""

    def __init__(self, report: ImportReport) -> None:
        n = len(report.problems)
        first = report.problems[0].text() if n else ""
        super().__init__(
            f"文件有 {n} 处问题，未导入任何记录。第一处：{first}",
            [FieldError(_field(p), p.message) for p in report.problems],
        )
        self.report = report


def _field(p: Problem) -> str:
    if p.row is None:
        return "file"
    return f"rows[{p.row}]" + (f".{p.column}" if p.column else "")


@dataclass
class ImportResult:
    report: ImportReport
    status: int  # 200 dry run, 201 recorded
    body: str = ""  # the stored response of a commit (JSON text), replayed as it was
    replayed: bool = False
    recorded: list[RecordedEntry] = field(default_factory=list)


# -- reading and checking the rows (no database) ---------------------------------------------------


def file_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def prepare_import(
    project: Project,
    data: bytes,
    *,
    default_kind: str = "contribution",
    filename: str = "",
    today: date | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Read ``data`` and check every row. Errors (the file as a whole): ValidationFailed (field
    ``file``), TooManyRows; row problems are in the report."""
    if default_kind not in IMPORT_KINDS:
        raise ValidationFailed.on("kind", f"默认类型须为 {', '.join(IMPORT_KINDS)} 之一")
    table = read_table(data, filename=filename, progress=progress)
    reader = _RowReader(project, table, default_kind, today or datetime.now(SHANGHAI).date())
    rows = [r for r in (reader.read(sheet_row) for sheet_row in table.rows) if r is not None]
    problems = list(table.problems) + reader.problems
    if not table.rows:
        problems.append(Problem(None, None, "表头下面没有数据行"))
    problems.extend(_check_total(table, reader.amounts, reader.amount_failed))
    problems.sort(key=lambda p: p.row or 0)
    return ImportReport(file_digest(data), table, rows, problems, len(table.rows))


def _check_total(table: Table, amounts: list[int], any_failed: bool) -> list[Problem]:
    if table.total_row is None or table.total_value is None:
        return []
    column = table.header_of("amount")
    try:
        total = amount_from_cell(table.total_value)
    except CellError as exc:
        return [Problem(table.total_row, column, f"合计：{exc}")]
    if any_failed:
        return []  # the rows' own problems come first; the sum of the rest means nothing
    summed = sum(amounts)
    if total != summed:
        return [
            Problem(
                table.total_row,
                column,
                f"合计 {format_fen_grouped(total)} 元与上面各行金额之和 {format_fen_grouped(summed)} 元不符，"
                f"相差 {format_fen_grouped(abs(total - summed))} 元：请核对是否漏行、多行或金额有误",
            )
        ]
    return []


class _RowReader:
    def __init__(self, project: Project, table: Table, default_kind: str, today: date) -> None:
        self.table = table
        self.default_kind = default_kind
        self.today = today
        self.problems: list[Problem] = []
        self.amounts: list[int] = []
        self.amount_failed = False
        self.categories: dict[str, str] = {}
        for line in project.budget_lines:
            self.categories[line.category.lower()] = line.category
            self.categories[_plain(line.label)] = line.category
        self.category_names = "、".join(f"{b.label}（{b.category}）" for b in project.budget_lines) or "（无）"
        name_header = normalise_header(table.header_of("name"))
        self.names_are_units = name_header in ("单位", "出资单位")

    def problem(self, row: int, name: str | None, message: str) -> None:
        self.problems.append(Problem(row, self.table.header_of(name) if name else None, message))

    def read(self, sheet_row: SheetRow) -> ImportRow | None:
        row, cells = sheet_row.row, sheet_row.cells
        before = len(self.problems)
        kind = self._kind(row, cells)
        amount = self._amount(row, cells)
        occurred_on = self._date(row, cells)
        text = {name: self._text(row, name, cells[name]) for name in TEXT_LIMITS if name in cells}
        if (text.get("memo") or "").startswith(EXAMPLE_MARK):
            self.problem(row, None, "这是模板里的示例行：请删除后再导入")
            return None
        if kind is None:
            return None
        present = set(cells)
        # The counterparty column (姓名/单位) names the grantor of a grant, the payee of a payment and
        # the payer of other income.
        target = kinds.get(kind).counterparty
        if target is not None and "name" in text and target not in text:
            text[target] = text.pop("name")
            present = present - {"name"} | {target}
        if kind == "in_kind" and "description" not in text and text.get("memo"):
            text["description"] = text.pop("memo")
        allowed = KIND_FIELDS[kind] | COMMON_FIELDS
        for name in sorted(present - allowed - QUIETLY_DROPPED, key=lambda n: self.table.header_index(n)):
            self.problem(row, name, f"不适用于{KIND_LABELS[kind]}：请清空这一格，或写在「备注」里")
        channel = self._channel(row, cells) if kind in ("contribution", "refund") else None
        category = self._category(row, cells) if kind == "expenditure" else None
        contributor = self._contributor(row, kind, text)
        self._required(row, kind, text)
        for name in PUBLIC_TEXT:
            if contains_phone(text.get(name)):
                self.problem(row, name, f"{PERSONAL_NUMBER_MESSAGE}（会公开）：电话请写在「电话」一栏")
        if len(self.problems) > before or amount is None or occurred_on is None:
            return None
        return ImportRow(
            row,
            EntryDraft(
                kind=kind,
                occurred_on=occurred_on,
                amount_fen=amount,
                memo=text.get("memo"),
                contributor=contributor,
                channel=channel,
                receipt_no=text.get("receipt_no") if kind == "contribution" else None,
                grantor=text.get("grantor") if kind == "grant" else None,
                document_no=text.get("document_no") if kind == "grant" else None,
                payee=text.get("payee") if kind == "expenditure" else None,
                category=category,
                invoice_no=text.get("invoice_no") if kind == "expenditure" else None,
                description=text.get("description") if kind == "in_kind" else None,
                payer=text.get("payer") if kind == "other_income" else None,
            ),
        )

    def _kind(self, row: int, cells: dict[str, Any]) -> str | None:
        if "kind" not in cells:
            return self.default_kind
        word = _plain(text_from_cell(cells["kind"]))
        kind = KIND_WORDS.get(word)
        if kind is None:
            self.problem(
                row,
                "kind",
                f'无法识别 "{text_from_cell(cells["kind"])[:20]}"：须为 {_KIND_CHOICES}',
            )
            return None
        return kind

    def _amount(self, row: int, cells: dict[str, Any]) -> int | None:
        try:
            fen = amount_from_cell(cells.get("amount", ""))
        except CellError as exc:
            self.amount_failed = True
            self.problem(row, "amount", str(exc))
            return None
        self.amounts.append(fen)
        return fen

    def _date(self, row: int, cells: dict[str, Any]) -> date | None:
        if "occurred_on" not in cells:
            self.problem(row, "occurred_on", "日期为空")
            return None
        try:
            day = date_from_cell(cells["occurred_on"])
        except CellError as exc:
            self.problem(row, "occurred_on", str(exc))
            return None
        if day > self.today:
            self.problem(row, "occurred_on", f"日期 {day.isoformat()} 晚于今天")
            return None
        if day < EARLIEST_DATE:
            self.problem(row, "occurred_on", "日期不能早于 2000-01-01")
            return None
        return day

    def _text(self, row: int, name: str, value: Any) -> str:
        text = text_from_cell(value)
        if _CONTROL.search(text):
            self.problem(row, name, "含有控制字符：请删除这一格中的特殊符号")
        limit = TEXT_LIMITS[name]
        if len(text) > limit:
            self.problem(row, name, f"过长：最多 {limit} 字")
        return text

    def _channel(self, row: int, cells: dict[str, Any]) -> str | None:
        if "channel" not in cells:
            return None
        word = _plain(text_from_cell(cells["channel"]))
        channel = CHANNEL_WORDS.get(word)
        if channel is None:
            self.problem(
                row,
                "channel",
                f'无法识别 "{text_from_cell(cells["channel"])[:20]}"：须为 微信、支付宝、现金、银行转账 或 其他',
            )
        return channel

    def _category(self, row: int, cells: dict[str, Any]) -> str | None:
        if "category" not in cells:
            self.problem(row, "category", f"支出须注明预算科目：{self.category_names}")
            return None
        written = text_from_cell(cells["category"])
        category = self.categories.get(_plain(written)) or self.categories.get(written.lower())
        if category is None:
            self.problem(row, "category", f'"{written[:20]}" 不在本项目预算中：须为 {self.category_names}')
        return category

    def _contributor(self, row: int, kind: str, text: dict[str, str]) -> ContributorRef | None:
        if kind not in CONTRIBUTOR_KINDS:
            return None
        name = text.get("name")
        if not name:
            return None  # _required says so
        return ContributorRef(
            name=name,
            household=text.get("household") or None,
            type=_contributor_type(name, self.names_are_units),
            phone=text.get("phone") or None,
        )

    def _required(self, row: int, kind: str, text: dict[str, str]) -> None:
        if kind in CONTRIBUTOR_KINDS and not text.get("name"):
            self.problem(row, "name", f"{KIND_LABELS[kind]}须写明出资人姓名")
        if kind == "grant" and not text.get("grantor"):
            self.problem(row, "grantor", "以奖代补须写明拨款单位")
        if kind == "expenditure" and not text.get("payee"):
            self.problem(row, "payee", "支出须写明收款单位")
        if kind == "other_income" and not text.get("payer"):
            self.problem(row, "payer", "其他收入须写明付款方（如开户银行、余料买方）")
        if kind == "in_kind" and not text.get("description"):
            self.problem(row, "description", "出力须写明出力内容（如：义务劳动 6 小时），可写在「备注」")


_KIND_CHOICES = "、".join(KIND_LABELS[k] for k in IMPORT_KINDS[:-1]) + f" 或 {KIND_LABELS[IMPORT_KINDS[-1]]}"


def _plain(text: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()


def _contributor_type(name: str, names_are_units: bool) -> str:
    if any(word in name for word in _PARTY):
        return "party_branch"
    if any(word in name for word in _ENTERPRISE):
        return "enterprise"
    if names_are_units or any(word in name for word in _ORGANISATION):
        return "organization"
    return "resident"


# -- recording (the database) -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportMark:
    id: int
    file_sha256: str
    rows: int
    first_seq: int
    last_seq: int
    imported_at: datetime

    def pointer(self) -> str:
        when = self.imported_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        return (
            f"内容相同的文件已于 {when} 导入本项目（导入编号 {self.id}，第 {self.first_seq}–{self.last_seq} 笔，"
            f"共 {self.rows} 行）；同一文件不会重复记账"
        )


_FIND_MARK = pg.Query(
    """
    SELECT i.id, i.file_sha256, i.rows, i.first_seq, i.last_seq, i.imported_at
    FROM imports i WHERE i.project_id = :pid AND i.file_sha256 = :sha
    """
)
_STORED_KEY = pg.Query("SELECT 1 FROM idempotency_keys WHERE scope = :scope AND key = :key")
# The import's id is drawn before the append, so the stored answer (rendered before the write, in
# the same statement) can name it; a refused import leaves a gap in the ids, as sequences do.
_NEXT_ID = "SELECT nextval(pg_get_serial_sequence('imports', 'id'))"
_WRITE_MARK = pg.Query(
    """
    INSERT INTO imports (id, community_id, project_id, file_sha256, file_format, encoding, rows, first_seq,
                         last_seq, imported_by)
    OVERRIDING SYSTEM VALUE
    VALUES (:id, :cid, :pid, :sha, :fmt, :encoding, :rows, :first, :last, :by)
    ON CONFLICT (project_id, file_sha256, community_id) DO NOTHING
    RETURNING id
    """
)


def _mark(row: Any) -> ImportMark:
    return ImportMark(row["id"], row["file_sha256"], row["rows"], row["first_seq"], row["last_seq"], row["imported_at"])


async def find_import(conn: AsyncConnection, project: Project, file_sha256: str) -> ImportMark | None:
    row = await pg.fetchrow(await pg.driver(conn), _FIND_MARK, pid=project.id, sha=file_sha256)
    return _mark(row) if row is not None else None


CommitRenderer = Callable[[ImportReport, list[RecordedEntry], int], Any]


async def run_import(
    engine: AsyncEngine,
    project: Project,
    report: ImportReport,
    *,
    dry_run: bool,
    recorded_by: str,
    render: CommitRenderer | None = None,
    idempotency: IdempotencyRequest | None = None,
    today: date | None = None,
) -> ImportResult:
    """Check (``dry_run``) or record the report's rows. Errors: Conflict (the same content was
    imported before; a dry run says so too), ImportRefused (a commit with any problem), the
    idempotency errors of ``append_entries``. A dry run's ledger-level problems (cash, spending
    gate, refunds) are added to ``report.problems``."""
    async with engine.connect() as conn:
        if not (idempotency is not None and await _key_is_stored(conn, idempotency)):
            earlier = await find_import(conn, project, report.file_sha256)
            if earlier is not None:
                raise Conflict(earlier.pointer())
    if report.problems or not report.rows:
        if dry_run:
            return ImportResult(report, 200)
        raise ImportRefused(report)
    drafts = [r.draft for r in report.rows]
    import_id = 0
    if not dry_run:
        async with engine.connect() as conn:
            import_id = await (await pg.driver(conn)).fetchval(_NEXT_ID)

    async def write_mark(conn: asyncpg.Connection, recorded: list[RecordedEntry]) -> None:
        written = await pg.fetchrow(
            conn,
            _WRITE_MARK,
            id=import_id,
            cid=project.community_id,
            pid=project.id,
            sha=report.file_sha256,
            fmt=report.table.format,
            encoding=report.table.encoding,
            rows=len(recorded),
            first=recorded[0].seq,
            last=recorded[-1].seq,
            by=recorded_by,
        )
        if written is None:
            # Another import of the same content committed while this one waited for the lock.
            earlier = await pg.fetchrow(conn, _FIND_MARK, pid=project.id, sha=report.file_sha256)
            raise Conflict(_mark(earlier).pointer() if earlier else "内容相同的文件已导入本项目")

    def body(recorded: list[RecordedEntry]) -> Any:
        assert render is not None
        return render(report, recorded, import_id)

    try:
        result: AppendResult = await append_entries(
            engine,
            project.code,
            drafts,
            recorded_by=recorded_by,
            render=body if not dry_run else (lambda _: None),
            idempotency=idempotency,
            status=201,
            today=today,
            after_write=None if dry_run else write_mark,
            dry_run=dry_run,
        )
    except LedgerError as exc:
        if exc.index is None or not 0 <= exc.index < len(report.rows):
            raise
        report.problems.append(_row_problem(report, report.rows[exc.index].row, exc))
        if dry_run:
            return ImportResult(report, 200)
        raise ImportRefused(report) from exc
    if dry_run:
        return ImportResult(report, 200)
    return ImportResult(report, result.status, result.body, result.replayed, result.entries)


def _row_problem(report: ImportReport, row: int, exc: LedgerError) -> Problem:
    name = exc.errors[0].field if exc.errors else "amount"
    name = _LEDGER_FIELD.get(name, name)
    column = report.column(name) if name in FIELD_LABELS else report.column("amount")
    message = exc.errors[0].message if exc.errors else exc.detail
    if exc.code == "countersign_required":
        message = f"{exc.detail}；表格导入不能代替审核，请删除这一行，另行提交凭证"
    return Problem(row, column, message)


async def _key_is_stored(conn: AsyncConnection, idempotency: IdempotencyRequest) -> bool:
    """A retry of a committed import replays its answer; it is not a second import of the file."""
    raw = await pg.driver(conn)
    return await pg.fetchrow(raw, _STORED_KEY, scope=idempotency.scope, key=idempotency.key) is not None
