"""Publishing, wired: the ledger's facts → the sheet's model → PDF bytes.

``ledger.disclosures`` runs the publishing transaction and calls a ``PdfMaker`` inside it; the one
made here gathers the sheet's facts on that transaction's connection (ledger/sheet_facts.py), has
reports/ shape them (sheet_builder, pure) and render them (render.py). Every publisher — the API,
the workspace, ``ledger disclose``, the demo — uses it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.disclosures import PdfMaker, SheetSnapshot
from ledger.sheet_facts import gather_sheet_facts
from reports import sheet_model
from reports.render import PdfRenderer
from reports.sheet_builder import LISTED_KINDS, build_sheet_model


async def sheet_model_for(
    conn: AsyncConnection, snap: SheetSnapshot, *, public_base_url: str
) -> sheet_model.SheetModel:
    """The sheet of ``snap``, its facts read on ``conn`` (the publishing snapshot)."""
    facts = await gather_sheet_facts(conn, snap, listed_kinds=LISTED_KINDS, rows_max=sheet_model.SHEET_ROWS_MAX)
    return build_sheet_model(facts, public_base_url=public_base_url)


def pdf_maker(renderer: PdfRenderer, public_base_url: str) -> PdfMaker:
    async def make(conn: AsyncConnection, snap: SheetSnapshot) -> bytes:
        return await renderer.render(await sheet_model_for(conn, snap, public_base_url=public_base_url))

    return make
