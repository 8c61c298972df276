"""The treasurer's and the 街道's jobs through the real ``ledger`` executable: export, disclose,
verify, backup and restore, against the embedded database and against LEDGER_DATABASE_URL.

Every command runs as a subprocess of .venv/bin/ledger, as a cron job would run it. The session's
embedded cluster is owned by this process, so the command only connects to it (ledger/embedded_pg.py);
backup and restore get clusters of their own (tests elsewhere tamper with the session's projects,
so ``verify --all`` there would rightly fail).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import asyncpg
import openpyxl
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.demo import load_demo
from api.settings import Settings
from ledger import tree
from ledger.canonical import SHANGHAI
from ledger.contributors import ContributorRef
from ledger.database import DatabaseRuntime, DatabaseUrls, create_engine, upgrade
from ledger.drafts import EntryDraft
from ledger.embedded_pg import SUPERUSER
from ledger.entries import append_entries
from ledger.projects import Project
from tests.api_support import Api
from tests.conftest import Database, make_project
from tests.test_ledger_tampering import as_superuser, dsn

LEDGER = Path(sys.executable).parent / "ledger"
DAY = date(2025, 6, 1)
FULL_NAMES = ("张小三", "欧阳小明", "3栋2单元501", "5栋1单元302")


@dataclass
class Run:
    status: int
    out: str
    err: str

    def lines(self) -> dict[str, str]:
        """``label：value`` lines of the output, by label."""
        return dict(line.split("：", 1) for line in self.out.splitlines() if "：" in line)


async def ledger(*args: str, env: dict[str, str]) -> Run:
    """Run ``ledger ARGS`` with only the given LEDGER_* settings (none inherited)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    done = await asyncio.to_thread(
        subprocess.run, [str(LEDGER), *args], capture_output=True, text=True, env={**clean, **env}, timeout=600
    )
    return Run(done.returncode, done.stdout, done.stderr)


def embedded(data_dir: Path, **more: str) -> dict[str, str]:
    return {"LEDGER_DATA_DIR": str(data_dir), **more}


def external(urls: DatabaseUrls, nowhere: Path, *, owner: bool = False) -> dict[str, str]:
    """Settings naming the database by URL; LEDGER_DATA_DIR points where an embedded cluster would
    leave a trace, so a test can tell none was started."""
    env = {"LEDGER_DATABASE_URL": urls.app, "LEDGER_DATA_DIR": str(nowhere)}
    if owner:
        env["LEDGER_OWNER_DATABASE_URL"] = urls.owner
    return env


def ok(run: Run) -> Run:
    assert run.status == 0, f"exit {run.status}\n{run.out}\n{run.err}"
    assert "Traceback" not in run.err, run.err
    return run


async def project_with_people(engine: AsyncEngine) -> Project:
    project = await make_project(engine)
    drafts = [
        EntryDraft(kind="grant", occurred_on=DAY, amount_fen=5_000_000, grantor="下陆区住建局", document_no="文12"),
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=20_000,
            contributor=ContributorRef(name="张小三", household="3栋2单元501"),
            channel="wechat",
            receipt_no="SJ-0001",
        ),
        EntryDraft(
            kind="contribution",
            occurred_on=DAY,
            amount_fen=100_050,
            contributor=ContributorRef(name="欧阳小明", household="5栋1单元302"),
            channel="cash",
            receipt_no="SJ-0002",
            memo="-1 号楼补交",
        ),
        EntryDraft(
            kind="expenditure",
            occurred_on=DAY,
            amount_fen=123_456,
            payee="某工程公司",
            category="materials",
            invoice_no="F001",
        ),
    ]
    await append_entries(engine, project.code, drafts, recorded_by="test", render=lambda r: len(r))
    return project


# -- export ---------------------------------------------------------------------------------------


async def test_export_each_format_is_the_public_export(
    engine: AsyncEngine, database: Database, api: Api, tmp_path: Path
) -> None:
    project = await project_with_people(engine)
    env = embedded(database.settings.data_dir)
    files = {fmt: tmp_path / f"entries.{fmt}" for fmt in ("csv", "xlsx", "json")}
    for fmt, path in files.items():
        run = ok(await ledger("export", "--project", project.code, "--format", fmt, "-o", str(path), env=env))
        assert f"已导出 4 笔记录到 {path}" in run.out and "姓名已脱敏" in run.out
    head = (await api.get(f"/api/v1/projects/{project.code}/ledger")).json()

    # CSV: byte for byte what a resident downloads.
    public_csv = await api.get(f"/api/v1/projects/{project.code}/entries.csv")
    assert files["csv"].read_bytes() == public_csv.content
    rows = list(csv.reader(io.StringIO(files["csv"].read_bytes().decode("utf-8-sig"))))
    assert [r[4] for r in rows[1:]] == ["", "张**", "欧阳**", "某工程公司"]
    assert rows[1][8] == "下陆区住建局"
    assert [r[5] for r in rows[1:]] == ["", "3栋", "5栋", ""]

    # XLSX: the same cells as the public one (the files differ only in their zip timestamps).
    public_xlsx = await api.get(f"/api/v1/projects/{project.code}/entries.xlsx")

    def cells(data: bytes) -> list[tuple[object, ...]]:
        sheet = openpyxl.load_workbook(io.BytesIO(data)).active
        assert sheet is not None
        return [tuple(c.value for c in row) for row in sheet.iter_rows()]

    mine = cells(files["xlsx"].read_bytes())
    assert mine == cells(public_xlsx.content)
    assert len(mine) == 5 and str(mine[3][3]) == "1000.5"

    # JSON: the CSV's rows as objects, with the head they were read at.
    document = json.loads(files["json"].read_text(encoding="utf-8"))
    assert document["project"] == project.code and document["masked"] is True
    assert (document["tree_size"], document["root_hash"]) == (head["size"], head["root_hash"])
    assert list(document["columns"].values()) == rows[0]
    for item, row in zip(document["entries"], rows[1:], strict=True):
        values = ["" if v is None else str(v) for k, v in item.items() if k != "kind_code"]
        # Text that looks like a formula is neutralised for spreadsheets only; JSON has it as recorded.
        assert values == [v.removeprefix("'") for v in row]
    assert rows[3][11] == "'-1 号楼补交" and document["entries"][2]["note"] == "-1 号楼补交"
    assert [e["kind_code"] for e in document["entries"]] == ["grant", "contribution", "contribution", "expenditure"]
    assert document["entries"][2]["amount"] == "1000.50"

    for path in files.values():
        text = path.read_bytes().decode("utf-8", errors="replace") if path.suffix != ".xlsx" else str(mine)
        for secret in FULL_NAMES:
            assert secret not in text, (path, secret)


async def test_export_through_database_url(engine: AsyncEngine, database: Database, api: Api, tmp_path: Path) -> None:
    project = await project_with_people(engine)
    nowhere = tmp_path / "no-embedded"
    by_url = tmp_path / "by-url.csv"
    ok(await ledger("export", "-p", project.code, "-f", "csv", "-o", str(by_url), env=external(database.urls, nowhere)))
    assert not nowhere.exists(), "LEDGER_DATABASE_URL set: no embedded cluster is started"
    assert by_url.read_bytes() == (await api.get(f"/api/v1/projects/{project.code}/entries.csv")).content


# -- disclose -------------------------------------------------------------------------------------


async def test_disclose_prints_the_sheet_the_service_serves(engine: AsyncEngine, database: Database, api: Api) -> None:
    project = await project_with_people(engine)
    today = datetime.now(SHANGHAI).date()
    env = embedded(database.settings.data_dir, LEDGER_PUBLIC_BASE_URL="https://ledger.example.org")
    args = ("disclose", "--project", project.code, "--from", "2025-06-01", "--to", today.isoformat())
    run = ok(await ledger(*args, "--notice-days", "10", "--key", "cron-2025-06", env=env))
    printed = run.lines()
    assert "已发布公示表第 1 期" in run.out
    found = re.fullmatch(r"https://ledger\.example\.org/d/(\d+)", printed["网址"])
    assert found, printed
    sheet_id = int(found.group(1))
    assert printed["PDF"] == f"https://ledger.example.org/api/v1/disclosures/{sheet_id}/pdf"

    served = await api.get(f"/api/v1/disclosures/{sheet_id}/pdf")
    assert served.status_code == 200
    assert printed["PDF SHA-256"] == hashlib.sha256(served.content).hexdigest()
    stored = (await api.get(f"/api/v1/disclosures/{sheet_id}")).json()
    assert stored["pdf_sha256"] == printed["PDF SHA-256"]
    assert (stored["tree_size"], stored["root_hash"]) == (int(printed["账本大小"]), printed["根哈希"])
    assert stored["tree_size"] == 4 and stored["notice_days"] == 10
    async with engine.connect() as rconn:
        _, root = await tree.root_at(rconn, project.code, 4)
    assert printed["根哈希"] == root.hex()
    pdf_text = await asyncio.to_thread(
        subprocess.run, ["pdftotext", "-", "-"], input=served.content, capture_output=True, check=True
    )
    assert "小区路面刷黑" in pdf_text.stdout.decode()

    # A cron's retry with the same key shows the same sheet and publishes nothing.
    again = ok(await ledger(*args, "--notice-days", "10", "--key", "cron-2025-06", env=env))
    assert "此幂等键已发布过公示表第 1 期" in again.out
    assert again.lines()["PDF SHA-256"] == printed["PDF SHA-256"] and again.lines()["网址"] == printed["网址"]
    listed = (await api.get(f"/api/v1/projects/{project.code}/disclosures")).json()["items"]
    assert [d["id"] for d in listed] == [sheet_id]

    future = await ledger("disclose", "-p", project.code, "--from", "2025-06-01", "--to", "2999/01/01", env=env)
    assert future.status == 2 and "公示期间不能包含未来的日期" in future.err
    assert len((await api.get(f"/api/v1/projects/{project.code}/disclosures")).json()["items"]) == 1


# -- verify ---------------------------------------------------------------------------------------


async def test_verify_passes_then_names_the_tampered_seq(
    engine: AsyncEngine, database: Database, tmp_path: Path
) -> None:
    project = await project_with_people(engine)
    env = embedded(database.settings.data_dir)
    nowhere = tmp_path / "no-embedded"
    good = ok(await ledger("verify", "--project", project.code, env=external(database.urls, nowhere)))
    async with engine.connect() as rconn:
        head = await tree.root_at(rconn, project.code, None)
    assert f"✓ {project.code}：4 笔，根哈希 {head[1].hex()}" in good.out
    assert "核验 1 个项目：全部通过" in good.out
    assert not nowhere.exists()

    edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
    await as_superuser(database, [(edit, [project.id, 3])], ["entries"])
    bad = await ledger("verify", "-p", project.code, env=env)
    assert bad.status == 1, bad
    assert f"✗ {project.code}：第 3 笔（seq=3）起与存储的哈希不符" in bad.out
    assert f"1 个不符（{project.code}）" in bad.out

    missing = await ledger("verify", "-p", "no-such-project", env=env)
    assert missing.status == 2 and "不存在" in missing.err


# -- backup and restore ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, DatabaseUrls]]:
    """A cluster of its own (owned by this process), with the demo community in it."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("cli-source"))
    runtime = DatabaseRuntime(settings)
    urls = runtime.start()
    upgrade(urls.owner, settings.app_role)

    async def load() -> None:
        engine = create_engine(urls.app, settings)
        try:
            assert await load_demo(engine)
        finally:
            await engine.dispose()

    asyncio.run(load())
    yield settings, urls
    runtime.stop()


def roots(run: Run) -> dict[str, str]:
    """project → root hash, from the lines of backup, restore and verify."""
    return dict(re.findall(r"^\S*\s*([\w-]+)：\d+ 笔，根哈希 ([0-9a-f]{64})", run.out, re.MULTILINE))


async def test_backup_restore_into_a_fresh_data_dir_keeps_every_root(
    source: tuple[Settings, DatabaseUrls], tmp_path: Path
) -> None:
    settings, _ = source
    env = embedded(settings.data_dir)
    today = datetime.now(SHANGHAI).date().isoformat()
    sheet = ok(await ledger("disclose", "-p", "jinxiu-road-2026", "--from", "2025-01-01", "--to", today, env=env))
    backup_file = tmp_path / "ledger.dump"
    backed_up = ok(await ledger("backup", "-o", str(backup_file), env=env))
    expected = roots(backed_up)
    assert set(expected) == {"jinxiu-road-2026", "jinxiu-garden-2025"}
    assert expected["jinxiu-road-2026"] == sheet.lines()["根哈希"]
    assert f"备份文件 SHA-256：{hashlib.sha256(backup_file.read_bytes()).hexdigest()}" in backed_up.out
    assert backup_file.stat().st_mode & 0o077 == 0, "names are in the backup: owner-only"
    assert not [name for name in os.listdir(tmp_path) if "partial" in name]

    fresh = embedded(tmp_path / "fresh")
    restored = ok(await ledger("restore", str(backup_file), env=fresh))
    assert roots(restored) == expected
    assert "公示表 1 期的根哈希相符" in restored.out and "核验 2 个项目：全部通过" in restored.out
    verified = ok(await ledger("verify", "--all", env=fresh))
    assert roots(verified) == expected

    # Over a database that holds a ledger: refused, in Chinese, and nothing changes.
    refused = await ledger("restore", str(backup_file), env=fresh)
    assert refused.status == 2
    assert "拒绝恢复：目标数据库不是空的" in refused.err and "--force" in refused.err

    # Tampering in the restored copy is caught: a changed entry by its seq, a changed sheet root.
    runtime = DatabaseRuntime(Settings(data_dir=tmp_path / "fresh"))
    await asyncio.to_thread(runtime.start)
    try:
        assert runtime.embedded is not None
        conn = await asyncpg.connect(dsn(runtime.embedded.info.url(SUPERUSER, "ledger")))
        try:
            async with conn.transaction():
                await conn.execute("ALTER TABLE entries DISABLE TRIGGER entries_no_update_delete")
                await conn.execute("ALTER TABLE disclosures DISABLE TRIGGER disclosures_no_update_delete")
                await conn.execute(
                    "UPDATE entries SET amount_fen = amount_fen + 1 WHERE seq = 2 AND project_id = "
                    "(SELECT id FROM projects WHERE code = 'jinxiu-garden-2025')"
                )
                await conn.execute("UPDATE disclosures SET root_hash = sha256(root_hash)")
        finally:
            await conn.close()
        tampered = await ledger("verify", "--all", env=fresh)
    finally:
        await asyncio.to_thread(runtime.stop)
    assert tampered.status == 1, tampered
    assert "✗ jinxiu-garden-2025：第 2 笔（seq=2）起与存储的哈希不符" in tampered.out
    assert "✗ jinxiu-road-2026：公示表第 1 期" in tampered.out and "的根哈希与账本不符" in tampered.out
    assert "核验 2 个项目：2 个不符" in tampered.out


async def test_backup_and_forced_restore_through_database_urls(
    source: tuple[Settings, DatabaseUrls], tmp_path: Path
) -> None:
    _, urls = source
    nowhere = tmp_path / "no-embedded"
    env = external(urls, nowhere, owner=True)
    backup_file = tmp_path / "by-url.dump"
    backed_up = ok(await ledger("backup", "-o", str(backup_file), env=env))
    expected = roots(backed_up)
    assert "jinxiu-road-2026" in expected

    # Restoring over the very database it came from: only with --force, in one transaction.
    restored = ok(await ledger("restore", "--force", str(backup_file), env=env))
    assert "覆盖了原有数据" in restored.out
    assert roots(restored) == expected
    assert not nowhere.exists()


# -- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "-f", "csv", "-o", "x.csv"], "错误：缺少必需的参数 '--project' / '-p'"),
        (["export", "-p", "x", "-f", "pdf", "-o", "x.pdf"], "须为 csv、xlsx、json 之一"),
        (["exprot"], "错误：没有命令 exprot（是否想写 export？）"),
        (["verify", "--projct", "x"], "错误：没有选项 --projct（是否想写 --project？）"),
        (
            ["disclose", "-p", "x", "--from", "六月一日", "--to", "2025-06-30"],
            "无法识别日期 '六月一日'，请写成 2026-11-30",
        ),
        (["disclose", "-p", "x", "--from", "2025-06-01", "--to", "2025-06-30", "--notice-days", "0"], "1 到 90 之间"),
        (["verify", "--project", "x", "--all"], "错误：--project 与 --all 只能选一个"),
    ],
)
def test_usage_errors_are_told_in_chinese(args: list[str], message: str) -> None:
    """Before any database is touched: what a mistyped cron line prints, with exit status 2."""
    from click.testing import CliRunner

    from api.cli import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Error:" not in result.stderr and "Traceback" not in result.stderr
