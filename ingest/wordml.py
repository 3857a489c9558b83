"""A DOCX's body read as a stream, so what the file unpacks to costs no more than its budget.

python-docx parses all of `word/document.xml` into a tree before anything can be read:
a 546 KB file can unpack to 150 MB of XML, gigabytes of tree and minutes of work. Here
the XML is fed 64 KB at a time to a parser target that keeps no tree, only the
paragraphs, cells and rows still open; each element read and each paragraph or table
row finished is charged to the document's budget, so a bomb is refused after as much
work as the budget allows.

What comes out is what python-docx reads (`tests/test_wordml.py` compares the two): the
body's paragraphs and tables in order; a paragraph's text is its runs' and its
hyperlinks' runs' (tabs and line breaks as `\\t` and `\\n`); a table cell's text is its
paragraphs', a cell spanning columns is repeated, and a vertically merged one repeats
the cell above. Nested tables, text boxes and tracked insertions are left out, as there.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ingest.errors import UnreadableDocumentError
from ingest.limits import Budget

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"
_RELATIONSHIP = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_FEED = 64 * 1024
# What a run's inner elements read as (python-docx `CT_R.text`); w:br only when it
# breaks a line (not a page or column).
_RUN_TEXT = {"tab": "\t", "ptab": "\t", "cr": "\n", "noBreakHyphen": "-"}
_BLOCK_SEPARATOR = 2  # characters between blocks in the extracted text ("\n\n")
_CELL_SEPARATOR = 3  # " | " between cells of a pipe-table row


@dataclass(frozen=True)
class Paragraph:
    """A body paragraph and the name of its style ("Normal", "heading 1", "Title" …)."""

    style: str
    text: str


@dataclass(frozen=True)
class Table:
    """A body table, one tuple of cell texts per row."""

    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class WordDocument:
    """The body's blocks in order, and the title from the core properties."""

    blocks: tuple[Paragraph | Table, ...]
    title: str


def read_wordml(data: BinaryIO, budget: Budget) -> WordDocument:
    """Read a DOCX's body and title; raise DocumentTooLargeError past the budget."""
    with zipfile.ZipFile(data) as archive:
        package = _relations(archive, "_rels/.rels", "")
        main = package.get("officeDocument")
        if main is None or main not in archive.namelist():
            raise UnreadableDocumentError("no main document part (word/document.xml)")
        folder = posixpath.dirname(main)
        related = _relations(archive, f"{folder}/_rels/{posixpath.basename(main)}.rels", folder)
        styles = _Styles()
        if related.get("styles") in archive.namelist():
            _parse(archive, related["styles"], styles, budget)
        core = _Title()
        if package.get("core-properties") in archive.namelist():
            _parse(archive, package["core-properties"], core, budget)
        body = _Body(budget, styles.names, styles.default)
        _parse(archive, main, body, budget)
    return WordDocument(tuple(body.blocks), "".join(core.text))


def _parse(archive: zipfile.ZipFile, part: str, target: Any, budget: Budget) -> None:
    """Feed one XML part to a parser target, in pieces; no tree is built."""
    from lxml import etree

    parser = etree.XMLParser(target=target, resolve_entities=False, no_network=True)
    with archive.open(part) as stream:
        while piece := stream.read(_FEED):
            budget.check()
            parser.feed(piece)
    parser.close()


def _relations(archive: zipfile.ZipFile, rels: str, folder: str) -> dict[str, str]:
    """Relationship kind ("officeDocument", "styles" …) → part name, from a .rels part."""
    if rels not in archive.namelist():
        return {}
    found = _Relations()
    _parse(archive, rels, found, Budget(rels))
    parts: dict[str, str] = {}
    for kind, target in found.targets:
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(folder, target)
        parts.setdefault(kind.rsplit("/", 1)[-1], posixpath.normpath(path))
    return parts


class _Relations:
    """Parser target collecting (type, target) of each Relationship."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, str]] = []

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        if tag == _RELATIONSHIP:
            self.targets.append((attrib.get("Type", ""), attrib.get("Target", "")))

    def close(self) -> None:
        """Nothing to finish."""


class _Styles:
    """Parser target: paragraph style id → name, and the default paragraph style."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.default = "Normal"
        self._style: tuple[str, bool] | None = None  # (id, is the default) while open

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        if tag == f"{W}style" and attrib.get(f"{W}type", "paragraph") == "paragraph":
            default = attrib.get(f"{W}default") in ("1", "true")
            self._style = (attrib.get(f"{W}styleId", ""), default)
        elif tag == f"{W}name" and self._style is not None:
            style_id, is_default = self._style
            self.names[style_id] = attrib.get(f"{W}val", style_id)
            if is_default:
                self.default = self.names[style_id]

    def end(self, tag: str) -> None:
        if tag == f"{W}style":
            self._style = None

    def close(self) -> None:
        """Nothing to finish."""


class _Title:
    """Parser target collecting the text of dc:title."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self._inside = False

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        self._inside = tag == _DC_TITLE

    def end(self, tag: str) -> None:
        self._inside = False

    def data(self, text: str) -> None:
        if self._inside:
            self.text.append(text)

    def close(self) -> None:
        """Nothing to finish."""


@dataclass
class _Paragraph:
    style: str
    runs: list[str] = field(default_factory=list)


@dataclass
class _Cell:
    paragraphs: list[str] = field(default_factory=list)
    span: int = 1
    continues: bool = False  # vertically merged with the cell above


@dataclass
class _Row:
    before: int = 0  # grid columns skipped before the first cell
    cells: list[_Cell] = field(default_factory=list)


@dataclass
class _Table:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    above: dict[int, str] = field(default_factory=dict)  # grid column → previous row's text


class _Body:
    """Parser target turning the body's elements into blocks as each one ends."""

    def __init__(self, budget: Budget, styles: Mapping[str, str], default_style: str) -> None:
        self.budget = budget
        self.styles = styles
        self.default_style = default_style
        self.blocks: list[Paragraph | Table] = []
        self._open: list[str] = []  # local names of the open elements, outermost first
        self._paragraphs: list[_Paragraph] = []
        self._runs: list[list[str]] = []
        self._cells: list[_Cell] = []
        self._rows: list[_Row] = []
        self._tables: list[_Table] = []
        self._in_text = False
        self._starts: dict[str, Callable[[Mapping[str, str]], None]] = {
            "p": lambda a: self._paragraphs.append(_Paragraph(self.default_style)),
            "r": lambda a: self._runs.append([]),
            "tc": lambda a: self._cells.append(_Cell()),
            "tr": lambda a: self._rows.append(_Row()),
            "tbl": lambda a: self._tables.append(_Table()),
        }
        self._ends: dict[str, Callable[[str, str], None]] = {
            "r": self._end_run,
            "p": self._end_paragraph,
            "tc": self._end_cell,
            "tr": self._end_row,
            "tbl": self._end_table,
        }

    def start(self, tag: str, attrib: Mapping[str, str]) -> None:
        self.budget.markup()
        name = tag[len(W) :] if tag.startswith(W) else ""
        parents = self._open[-2:]
        self._open.append(name)
        if name in self._starts:
            self._starts[name](attrib)
        elif parents[-1:] == ["r"]:
            self._run_content(name, attrib)
        elif parents == ["p", "pPr"] and name == "pStyle":
            style = attrib.get(f"{W}val", "")
            self._paragraphs[-1].style = self.styles.get(style, style)
        elif parents == ["tc", "tcPr"] and name == "gridSpan":
            self._cells[-1].span = max(1, _int(attrib.get(f"{W}val")))
        elif parents == ["tc", "tcPr"] and name == "vMerge":
            self._cells[-1].continues = attrib.get(f"{W}val", "continue") == "continue"
        elif parents == ["tr", "trPr"] and name == "gridBefore":
            self._rows[-1].before = _int(attrib.get(f"{W}val"))

    def data(self, text: str) -> None:
        if self._in_text:
            self._runs[-1].append(text)

    def end(self, tag: str) -> None:
        name = self._open.pop()
        self._in_text = False
        if name in self._ends:
            parent = self._open[-1] if self._open else ""
            grandparent = self._open[-2] if len(self._open) > 1 else ""
            self._ends[name](parent, grandparent)

    def close(self) -> None:
        """Nothing to finish: blocks are collected as they end."""

    def _run_content(self, name: str, attrib: Mapping[str, str]) -> None:
        if name == "t":
            self._in_text = True
        elif name == "br":
            if attrib.get(f"{W}type", "textWrapping") == "textWrapping":
                self._runs[-1].append("\n")
        elif name in _RUN_TEXT:
            self._runs[-1].append(_RUN_TEXT[name])

    def _end_run(self, parent: str, grandparent: str) -> None:
        text = "".join(self._runs.pop())
        if parent == "p" or (parent == "hyperlink" and grandparent == "p"):
            self._paragraphs[-1].runs.append(text)

    def _end_paragraph(self, parent: str, grandparent: str) -> None:
        paragraph = self._paragraphs.pop()
        text = "".join(paragraph.runs)
        if parent == "body":
            self.budget.spend(len(text) + _BLOCK_SEPARATOR)
            self.blocks.append(Paragraph(paragraph.style, text))
        elif parent == "tc":
            self._cells[-1].paragraphs.append(text)

    def _end_cell(self, parent: str, grandparent: str) -> None:
        cell = self._cells.pop()
        if parent == "tr":
            self._rows[-1].cells.append(cell)

    def _end_row(self, parent: str, grandparent: str) -> None:
        row = self._rows.pop()
        if parent != "tbl":
            return
        table = self._tables[-1]
        texts: list[str] = []
        grid: dict[int, str] = {}
        column = row.before
        for cell in row.cells:
            text = table.above.get(column, "") if cell.continues else "\n".join(cell.paragraphs)
            for k in range(cell.span):
                grid[column + k] = text
            texts.extend([text] * cell.span)
            column += cell.span
        self.budget.spend(sum(len(t) + _CELL_SEPARATOR for t in texts) + 1)
        table.above = grid
        table.rows.append(tuple(texts))

    def _end_table(self, parent: str, grandparent: str) -> None:
        table = self._tables.pop()
        if parent == "body":
            self.blocks.append(Table(tuple(table.rows)))


def _int(value: str | None) -> int:
    return int(value) if value is not None and value.isdigit() else 0
