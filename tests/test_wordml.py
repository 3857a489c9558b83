"""The streaming DOCX reader reads what python-docx reads, with bounded work and memory."""

from __future__ import annotations

import io

import docx
import pytest
from docx.document import Document as WordFile
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.table import Table as WordTable
from docx.text.paragraph import Paragraph as WordParagraph

from ingest.errors import DocumentTooLargeError
from ingest.limits import Budget, Limits
from ingest.wordml import Paragraph, Table, read_wordml
from tests.samples import BOMB_PARAGRAPH, docx_bomb


def _save(document: WordFile) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _run(parent: object, tag: str, **attrs: str) -> None:
    """Append a run holding one inner element (w:tab, w:br …) to a paragraph element."""
    run = OxmlElement("w:r")
    inner = OxmlElement(tag, {qn(k): v for k, v in attrs.items()})
    run.append(inner)
    parent.append(run)  # type: ignore[attr-defined]


def _intricate() -> bytes:
    """Headings, tabs and breaks, a hyperlink, merged cells, a nested table, a title."""
    document = docx.Document()
    document.core_properties.title = "算力政策汇编"
    document.add_paragraph("政策汇编", style="Title")
    document.add_heading("一、总体要求", level=1)
    paragraph = document.add_paragraph("到2025年")
    _run(paragraph._p, "w:tab")
    paragraph.add_run("建成智算中心")
    _run(paragraph._p, "w:br")  # a line break reads as \n
    _run(paragraph._p, "w:br", **{"w:type": "page"})  # a page break as nothing
    paragraph.add_run("第二行")
    _run(paragraph._p, "w:noBreakHyphen")
    link = OxmlElement("w:hyperlink")
    _run(link, "w:t")
    link[0][0].text = "（链接文字）"
    paragraph._p.append(link)
    inserted = OxmlElement("w:ins")  # tracked insertions are not read, as in python-docx
    _run(inserted, "w:t")
    inserted[0][0].text = "修订插入"
    paragraph._p.append(inserted)
    document.add_heading("二、任务分工", level=2)
    table = document.add_table(rows=4, cols=3)
    for r in range(4):
        for c in range(3):
            table.cell(r, c).text = f"格{r}{c}"
    table.cell(0, 0).merge(table.cell(0, 1))  # across two columns
    table.cell(1, 2).merge(table.cell(3, 2))  # down three rows
    table.cell(2, 0).add_paragraph("第二段")
    table.cell(2, 1).add_table(rows=1, cols=1).cell(0, 0).text = "嵌套表格"
    document.add_paragraph("资料来源：整理。")
    return _save(document)


def _by_python_docx(data: bytes) -> list[tuple[str, object]]:
    document = docx.Document(io.BytesIO(data))
    out: list[tuple[str, object]] = []
    for item in document.iter_inner_content():
        if isinstance(item, WordTable):
            out.append(("table", tuple(tuple(c.text for c in row.cells) for row in item.rows)))
        else:
            assert isinstance(item, WordParagraph)
            out.append((item.style.name.lower() if item.style else "", item.text))
    return out


def _by_wordml(data: bytes) -> list[tuple[str, object]]:
    read = read_wordml(io.BytesIO(data), Budget("x.docx"))
    return [
        ("table", block.rows) if isinstance(block, Table) else (block.style.lower(), block.text)
        for block in read.blocks
        if isinstance(block, Table | Paragraph)
    ]


def test_reads_what_python_docx_reads() -> None:
    data = _intricate()
    ours = _by_wordml(data)
    assert ours == _by_python_docx(data)
    assert ("normal", "到2025年\t建成智算中心\n第二行-（链接文字）") in ours
    assert read_wordml(io.BytesIO(data), Budget("x.docx")).title == "算力政策汇编"
    table = next(rows for kind, rows in ours if kind == "table")
    assert table[0][0] == table[0][1]  # a cell across two columns, repeated
    assert table[1][2] == table[2][2] == table[3][2]  # one down three rows, repeated
    assert "第二段" in table[2][0] and "嵌套表格" not in str(table)


@pytest.mark.parametrize(
    ("paragraph", "why"),
    [
        (BOMB_PARAGRAPH, "characters"),
        (b"<w:p/>", "characters"),  # each paragraph costs its separator
        (b"<w:p><w:r><w:rPr><w:sz w:val='28'/></w:rPr></w:r></w:p>", "XML elements"),
    ],
)
def test_a_bomb_is_refused_after_reading_no_more_than_the_budget(
    paragraph: bytes, why: str
) -> None:
    data = docx_bomb(paragraph, 2_000_000)  # hundreds of MB unpacked
    assert len(data) < 1024 * 1024
    budget = Budget("bomb.docx", Limits(chars=100_000))
    with pytest.raises(DocumentTooLargeError, match=why):
        read_wordml(io.BytesIO(data), budget)
    # Reading stopped at the limit: a sliver of the two million paragraphs was touched.
    assert budget.chars <= 100_000 and budget.elements <= 2 * 100_000 + 1
