"""Paper → page: the QR code printed on a published sheet decodes (zbarimg, after pdftoppm) to the
sheet's own page, /d/{id} under LEDGER_PUBLIC_BASE_URL, and that page shows the printed root."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from tests.api_support import Api, World, contribution
from tests.pages_support import publish


def qr_codes(pdf: bytes, tmp_path: Path) -> list[str]:
    (tmp_path / "sheet.pdf").write_bytes(pdf)
    subprocess.run(["pdftoppm", "-r", "200", "-png", "sheet.pdf", "page"], cwd=tmp_path, check=True, timeout=120)
    found: list[str] = []
    for image in sorted(tmp_path.glob("page*.png")):
        run = subprocess.run(
            ["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(image)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode in (0, 4), run.stderr  # 4: no code on this page
        found += [line for line in run.stdout.splitlines() if line]
    return found


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


async def test_the_sheet_qr_code_opens_the_sheet_page(api: Api, world: World, tmp_path: Path) -> None:
    project = await world.project()
    await world.entry(project, contribution("200"))
    sheet = await publish(world, project)
    pdf = (await api.get(sheet["pdf_url"])).content
    codes = qr_codes(pdf, tmp_path)
    base = "http://127.0.0.1:8000"  # the test app's LEDGER_PUBLIC_BASE_URL (the default)
    assert codes == [f"{base}/d/{sheet['id']}"], codes
    page = await api.get(urlsplit(codes[0]).path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert sheet["root_hash"][:4] in page.text and f'id="sheet-size">{sheet["tree_size"]}<' in page.text
    # The printed links name the same pages.
    text = pdf_text(tmp_path / "sheet.pdf")
    assert f"{base}/d/{sheet['id']}" in text and f"{base}/p/{project}" in text
