"""``ledger import`` through the real ``ledger`` executable (a subprocess), on the embedded
database (the test session's, which the CLI joins as a second process) and on LEDGER_DATABASE_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.tree import root_at
from tests.conftest import Database, make_project
from tests.import_support import HEADER, add_part, contribution_rows, csv_text, day, xlsx

LEDGER = Path(sys.executable).with_name("ledger")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LEDGER), *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def embedded_env(database: Database) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_DATA_DIR"] = str(database.settings.data_dir)
    env["LEDGER_PG_BINARIES"] = database.settings.pg_binaries
    return env


def url_env(database: Database) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_DATABASE_URL"] = database.urls.app
    env["LEDGER_OWNER_DATABASE_URL"] = database.urls.owner
    env["LEDGER_DATA_DIR"] = "/nonexistent-on-purpose"  # must not be needed with a URL
    return env


async def size_of(engine: AsyncEngine, project: str) -> int:
    async with engine.connect() as rconn:
        size, _ = await root_at(rconn, project, None)
    return size


async def test_dry_run_on_the_embedded_database_prints_the_table(
    database: Database, engine: AsyncEngine, tmp_path: Path
) -> None:
    project = await make_project(engine)
    file = tmp_path / "众筹明细.csv"
    file.write_bytes(
        csv_text([("锦绣花园众筹明细",), HEADER, *contribution_rows(3), ("合计", None, None, "600")]).encode("gbk")
    )
    run = run_cli(["import", str(file), "--project", project.code, "--dry-run"], embedded_env(database))
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "CSV，编码 GB18030" in out and "表头在第 2 行" in out and "合计行在第 6 行" in out
    assert "将记录的内容" in out and "居民00001" in out and "按类型合计" in out and "600.00" in out
    assert "3 行都没有问题（未记账）" in out
    assert await size_of(engine, project.code) == 0


async def test_commit_through_the_database_url_and_the_same_file_again(
    database: Database, engine: AsyncEngine, tmp_path: Path
) -> None:
    project = await make_project(engine)
    file = tmp_path / "明细.xlsx"
    file.write_bytes(xlsx([HEADER, *contribution_rows(5)]))
    run = run_cli(["import", str(file), "--project", project.code], url_env(database))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "已导入 5 笔：第 1–5 笔" in run.stdout and "已记账" in run.stdout
    assert await size_of(engine, project.code) == 5

    again = run_cli(["import", str(file), "--project", project.code], url_env(database))
    assert again.returncode == 2
    assert "内容相同的文件已于" in again.stderr and "第 1–5 笔" in again.stderr
    assert await size_of(engine, project.code) == 5


async def test_problems_are_listed_in_chinese_and_nothing_is_recorded(
    database: Database, engine: AsyncEngine, tmp_path: Path
) -> None:
    project = await make_project(engine)
    file = tmp_path / "有错.csv"
    rows = [HEADER, *contribution_rows(1), (day().isoformat(), "李四", "2栋", "两百", "刷卡", None, None)]
    file.write_text(csv_text(rows), encoding="utf-8-sig")
    for extra in (["--dry-run"], []):
        run = run_cli(["import", str(file), "--project", project.code, *extra], url_env(database))
        assert run.returncode == 1, run.stdout + run.stderr
        assert '第 3 行「金额」: 无法识别 "两百"' in run.stdout
        assert '第 3 行「方式」: 无法识别 "刷卡"' in run.stdout
    assert await size_of(engine, project.code) == 0


async def test_refusals_exit_non_zero(database: Database, engine: AsyncEngine, tmp_path: Path) -> None:
    file = tmp_path / "a.csv"
    file.write_text(csv_text([HEADER, *contribution_rows(1)]))
    run = run_cli(["import", str(file), "--project", "no-such-project", "--dry-run"], url_env(database))
    assert run.returncode == 2 and "项目 no-such-project 不存在" in run.stderr
    project = await make_project(engine)
    macro = tmp_path / "宏.xlsm"
    macro.write_bytes(add_part(xlsx([HEADER, *contribution_rows(1)]), "xl/vbaProject.bin", b"\x00" * 16))
    run = run_cli(["import", str(macro), "--project", project.code, "--kind", "contribution"], url_env(database))
    assert run.returncode == 2 and "宏" in run.stderr
    assert await size_of(engine, project.code) == 0
