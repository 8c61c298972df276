"""``verify``'s worker processes (``python -m ledger.log_check``, ledger/tree.py ``_worker``): they
see the verifying snapshot and nothing committed after it, a failing worker fails the
verification loudly, and a cancelled verification leaves no worker behind. Not timed."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from typing import Any

import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import tree
from ledger.contributors import ContributorRef
from ledger.drafts import EntryDraft
from ledger.entries import append_entries
from ledger.projects import Project
from tests.conftest import Database, make_project
from tests.test_ledger_tampering import as_superuser


def contributions(n: int, start: int = 0) -> list[EntryDraft]:
    return [
        EntryDraft(
            kind="contribution",
            occurred_on=date(2025, 6, 1),
            amount_fen=10_000 + i,
            contributor=ContributorRef(name=f"居民{i % 7}", household=f"{i % 3 + 1}栋"),
            memo="众筹",
        )
        for i in range(start, start + n)
    ]


async def project_of(engine: AsyncEngine, n: int) -> Project:
    project = await make_project(engine)
    await append_entries(engine, project.code, contributions(n), recorded_by="test", render=lambda r: len(r))
    return project


def log_checkers() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if "ledger.log_check" in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def test_workers_see_the_verifying_snapshot(
    engine: AsyncEngine, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit committed after verify took its snapshot, before its workers start, is not seen
    by them (every worker sets the exported snapshot); the next verify finds it."""
    project = await project_of(engine, 40)
    real_worker = tree._worker
    edited: list[int] = []

    async def edit_then_work(job: dict[str, Any]) -> Any:
        if not edited:
            edited.append(1)
            edit = "UPDATE entries SET amount_fen = amount_fen + 100 WHERE project_id = $1 AND seq = $2"
            await as_superuser(database, [(edit, [project.id, 5])], ["entries"])
        return await real_worker(job)

    monkeypatch.setattr(tree, "_worker", edit_then_work)
    during = await tree.verify(engine, project.code, workers=2, unit_level=3)
    assert during.ok and during.size == 40, "the workers read the log as it was when verify began"
    after = await tree.verify(engine, project.code, workers=2, unit_level=3)
    assert not after.ok and after.first_bad_seq == 5


async def test_a_failing_worker_fails_the_verification(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    project = await project_of(engine, 12)
    real_exec = asyncio.create_subprocess_exec

    async def broken(*args: Any, **kwargs: Any) -> Any:
        return await real_exec(sys.executable, "-c", "import sys; sys.exit('数据库连接失败')", **kwargs)

    monkeypatch.setattr(tree.asyncio, "create_subprocess_exec", broken)
    with pytest.raises(RuntimeError, match=r"verify worker failed .*数据库连接失败"):
        await tree.verify(engine, project.code, workers=2, unit_level=2)


async def test_a_cancelled_verification_leaves_no_worker_behind(engine: AsyncEngine) -> None:
    project = await project_of(engine, 2_000)
    assert not log_checkers()
    task = asyncio.create_task(tree.verify(engine, project.code, workers=2, unit_level=4))
    for _ in range(500):  # until both workers run
        if len(log_checkers()) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(log_checkers()) == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [p for p in log_checkers() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


async def test_past_the_in_process_size_even_one_unit_is_checked_off_the_event_loop(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service verifies on its event loop only small logs; a larger one of a single unit goes
    to one worker process, and the answer is the same."""
    project = await project_of(engine, 40)
    in_process = await tree.verify(engine, project.code, workers=0)
    real_worker = tree._worker
    jobs: list[Any] = []

    async def counted(job: dict[str, Any]) -> Any:
        jobs.append(job["units"])
        return await real_worker(job)

    monkeypatch.setattr(tree, "_worker", counted)
    assert await tree.verify(engine, project.code) == in_process
    assert jobs == []  # 40 entries: in this process
    monkeypatch.setattr(tree, "VERIFY_IN_PROCESS_MAX", 10)
    assert await tree.verify(engine, project.code) == in_process
    assert jobs == [[0]]  # one unit, one worker


async def test_workers_run_the_callers_code_whatever_the_working_directory(
    engine: AsyncEngine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m`` puts the working directory first on the path: a service started in a folder
    holding another ``ledger`` (an old checkout) would have its workers check the log with that
    code. The workers start with ``-P``, so they import the verifying process's own ledger."""
    decoy = tmp_path / "ledger"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "log_check.py").write_text("import sys\nsys.exit('冒名的 ledger：不应被导入')\n")
    monkeypatch.chdir(tmp_path)
    project = await project_of(engine, 12)
    verification = await tree.verify(engine, project.code, workers=2, unit_level=2)
    assert verification.ok and verification.size == 12
