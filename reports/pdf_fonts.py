"""Compact the CJK fonts WeasyPrint embeds: a 100-entry sheet from ~0.55 MB to ~0.2 MB.

WeasyPrint subsets each font but keeps every glyph id up to the highest one used, so that the
glyph ids written in the page content stay valid. A CJK face has ~65,000 glyphs and 汉字 sit high
in it: each embedded face then carries ~60,000 empty glyphs (a CharStrings index of three-byte
offsets, horizontal and vertical metrics for each) — about 180 KB compressed per face, for a few
hundred glyphs actually drawn.

This finisher rewrites each such font as a bare CID-keyed CFF (``/FontFile3 /Subtype
/CIDFontType0C``, the way CJK text has been embedded in PDF since Acrobat 4) holding only the glyphs
drawn, each *named by the glyph id the page content uses*: in a CIDFontType0 font the PDF's codes
are CIDs (Identity-H), and the CFF charset maps each CID to its glyph. Widths (``/W``) and the
``ToUnicode`` map are keyed by the same codes and stay as they are; so does text extraction.

Only fonts that are already CID-keyed CFF are touched (the Noto CJK families); anything else is
left as WeasyPrint wrote it.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from fontTools.cffLib import CFFFontSet
from fontTools.ttLib import TTFont

log = logging.getLogger(__name__)

# A charstring this short draws nothing ("endchar" and perhaps a width).
_EMPTY_CHARSTRING_MAX = 2


def compact_cff(font_data: bytes) -> bytes | None:
    """The glyphs of an OpenType/CFF font (CID-keyed) that draw something, as a bare CFF whose
    charset maps each original glyph id (as CID) to its glyph; None when the font is not one."""
    if font_data[:4] != b"OTTO":
        return None
    font = TTFont(io.BytesIO(font_data), lazy=True, recalcBBoxes=False)
    if "CFF " not in font:
        return None
    cff: CFFFontSet = font["CFF "].cff
    top = cff.topDictIndex[0]
    if not hasattr(top, "ROS") or not hasattr(top, "FDSelect"):
        return None
    order = font.getGlyphOrder()
    char_strings = top.CharStrings
    index = char_strings.charStringsIndex
    # Sizes straight from the INDEX offsets: no charstring is decoded.
    offsets = index.offsets
    kept = [0] + [gid for gid in range(1, len(order)) if offsets[gid + 1] - offsets[gid] > _EMPTY_CHARSTRING_MAX]
    fd_select = top.FDSelect
    new_names = [".notdef"] + [f"cid{gid:05d}" for gid in kept[1:]]
    new_strings = [index[gid] for gid in kept]
    new_fd = [fd_select[gid] for gid in kept]

    top.charset = new_names
    char_strings.charStrings = {name: i for i, name in enumerate(new_names)}
    index.items = new_strings
    if hasattr(index, "offsets"):
        index.offsets = []
    fd_select.gidArray = new_fd
    fd_select.format = 3
    if hasattr(top, "CIDCount"):
        top.CIDCount = max(top.CIDCount, kept[-1] + 1)
    out = io.BytesIO()
    cff.compile(out, font)
    return out.getvalue()


def compact_fonts(_document: Any, pdf: Any) -> None:
    """A ``write_pdf(finisher=…)`` hook: rewrite the embedded CID-keyed CFF fonts (see above)."""
    import pydyf

    for obj in pdf.objects:
        if not isinstance(obj, pydyf.Stream) or obj.extra.get("Subtype") != "/OpenType":
            continue
        try:
            compact = compact_cff(b"".join(obj.stream))
        except Exception:  # never fail a sheet for its size: keep what WeasyPrint wrote
            log.warning("could not compact an embedded font", exc_info=True)
            continue
        if compact is not None:
            obj.stream = [compact]
            obj.extra["Subtype"] = "/CIDFontType0C"
