"""Real documents made with real libraries, for the loader and upload tests."""

from __future__ import annotations

import copy
import io
import zipfile
from collections.abc import Iterable, Sequence

import docx
from PIL import Image
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

# reportlab's built-in Adobe CID font: a real Chinese text layer without a font file.
CJK_FONT = "STSong-Light"


def pdf(pages: Sequence[Sequence[str]], title: str | None = None) -> bytes:
    """A PDF with one page per list of lines, drawn in a CJK font."""
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    out = io.BytesIO()
    document = canvas.Canvas(out)
    if title:
        document.setTitle(title)
    for lines in pages:
        document.setFont(CJK_FONT, 11)
        for n, line in enumerate(lines):
            document.drawString(50, 780 - 16 * n, line)
        document.showPage()
    document.save()
    return out.getvalue()


def scanned_pdf() -> bytes:
    """Two pages of pictures only: a drawn shape and an embedded image, no text."""
    out = io.BytesIO()
    document = canvas.Canvas(out)
    document.rect(100, 400, 300, 200, fill=1)
    document.showPage()
    page_image = Image.new("RGB", (200, 100), "white")
    document.drawImage(ImageReader(page_image), 100, 400, width=200, height=100)
    document.showPage()
    document.save()
    return out.getvalue()


def docx_bytes(
    paragraphs: Sequence[str],
    table: Sequence[Sequence[str]] = (),
    caption: str = "",
    heading: str = "",
    title: str = "",
) -> bytes:
    """A DOCX: a heading, paragraphs, then a captioned table (header row first)."""
    document = docx.Document()
    document.core_properties.title = title
    if heading:
        document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        if caption:
            document.add_paragraph(caption)
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# One paragraph of text in WordprocessingML; 1,850,000 of them make the 546 KB DOCX that
# unpacks to 150 MB of the issue.
BOMB_PARAGRAPH = "<w:p><w:r><w:t>大模型政策推动人工智能产业发展。</w:t></w:r></w:p>".encode()


def docx_bomb(paragraph: bytes = BOMB_PARAGRAPH, paragraphs: int = 1_850_000) -> bytes:
    """A real DOCX whose body repeats one paragraph: small on the wire, huge unpacked."""
    return wordml_docx(paragraph * 1000 for _ in range(paragraphs // 1000))


def wordml_docx(body: Iterable[bytes]) -> bytes:
    """A real DOCX whose body is the WordprocessingML given, written as it comes."""
    source = zipfile.ZipFile(io.BytesIO(docx_bytes([])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename != "word/document.xml":
                archive.writestr(copy.copy(info), data)
                continue
            head, _, tail = data.partition(b"<w:body>")
            with archive.open("word/document.xml", "w") as written:
                written.write(head + b"<w:body>")
                for part in body:
                    written.write(part)
                written.write(tail)
    return out.getvalue()
