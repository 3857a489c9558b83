"""Loading PDF, DOCX, HTML and text files in every encoding, from real files in tmp_path."""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

import docx
import pytest
from PIL import Image
from pypdf import PdfWriter

from ingest.chunking import chunk_document
from ingest.errors import (
    CorpusError,
    EmptyDocumentError,
    EncryptedDocumentError,
    ScannedPDFError,
    UnreadableDocumentError,
    UnsupportedFormatError,
)
from ingest.formats import MAX_UNPACKED_BYTES, PAGE_BREAK
from ingest.loaders import corpus_files, load_bytes, load_document
from ingest.types import Document, page_at
from tests.samples import docx_bytes, pdf, scanned_pdf

PAGE_ONE = ["关于推动未来产业创新发展的实施意见", "到2025年，未来产业技术创新全面发展。"]
PAGE_TWO = ["第二页：建设超大规模智算中心。", "满足大模型迭代训练和应用推理需求。"]
POLICY_CAPTION = "2023-2024年我国大模型行业部分相关政策情况"
POLICY_ROWS = [
    ["发布时间", "发布部门", "政策名称", "主要内容"],
    ["2024年1月", "国务院", "关于进一步优化政务服务的指导意见", "探索应用自然语言大模型等技术。"],
    ["2024年4月", "国家矿山安监局", "关于矿山智能化的指导意见", "加快矿山大模型的算法优化。"],
]
REPORT = "关于推动未来产业创新发展的实施意见\n\n到2025年，未来产业技术创新、产业培育全面发展。\n"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _docx_bytes(document: docx.document.Document) -> bytes:
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _policy_docx(title: str = "") -> bytes:
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading("我国大模型行业相关政策", level=1)
    document.add_paragraph("近年来，国家陆续出台多项政策支持大模型行业发展。")
    document.add_paragraph(POLICY_CAPTION)
    table = document.add_table(rows=len(POLICY_ROWS), cols=len(POLICY_ROWS[0]))
    for r, row in enumerate(POLICY_ROWS):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_heading("地方政策", level=2)
    document.add_paragraph("资料来源：观研天下整理。")
    return _docx_bytes(document)


# --- PDF -----------------------------------------------------------------------------


def test_pdf_text_layer_is_read_page_by_page(tmp_path: Path) -> None:
    path = _write(tmp_path, "policy.pdf", pdf([PAGE_ONE, PAGE_TWO], title="未来产业实施意见"))
    doc = load_document(path)
    one, two = "\n".join(PAGE_ONE), "\n".join(PAGE_TWO)
    assert doc.text == one + PAGE_BREAK + two
    assert doc.pages == (0, len(one) + len(PAGE_BREAK))
    assert doc.text[doc.pages[1] :] == two
    assert doc.title == "未来产业实施意见"
    assert doc.source == "policy.pdf"


def test_pdf_without_a_real_title_takes_its_first_line(tmp_path: Path) -> None:
    # reportlab, like most tools, writes a placeholder ("untitled") when none is set.
    doc = load_document(_write(tmp_path, "policy.pdf", pdf([PAGE_ONE])))
    assert doc.title == PAGE_ONE[0]


def test_pdf_empty_page_keeps_later_page_numbers(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "gap.pdf", pdf([PAGE_ONE, [], PAGE_TWO])))
    assert len(doc.pages) == 3
    assert page_at(doc, doc.text.index("第二页")) == 3


def test_pdf_chunks_carry_their_page(tmp_path: Path) -> None:
    pages = [
        [f"第{p}页第{n}句：加快建设全国一体化算力网络。" for n in range(20)] for p in (1, 2, 3)
    ]
    doc = load_document(_write(tmp_path, "long.pdf", pdf(pages)))
    chunks = chunk_document(doc)
    assert {c.metadata["page"] for c in chunks} == {"1", "2", "3"}
    for chunk in chunks:
        assert chunk.text.startswith(f"第{chunk.metadata['page']}页")


def test_pdf_kangxi_radicals_are_read_as_ordinary_characters(tmp_path: Path) -> None:
    # "⼈⼯智能" with U+2F08 and U+2F2F, as some PDF fonts map 人 and 工.
    doc = load_document(_write(tmp_path, "ai.pdf", pdf([["\u2f08\u2f2f智能产业"]])))
    assert doc.text == "人工智能产业"


def test_scanned_pdf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScannedPDFError, match=r"scan\.pdf has no text layer.*OCR it first"):
        load_document(_write(tmp_path, "scan.pdf", scanned_pdf()))


@pytest.mark.parametrize(
    "data",
    [pdf([PAGE_ONE])[:400], b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n", b"not a pdf at all"],
    ids=["truncated", "no-xref", "garbage"],
)
def test_corrupt_pdf_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UnreadableDocumentError, match=r"bad\.pdf is not a readable PDF file"):
        load_document(_write(tmp_path, "bad.pdf", data))


def _encrypted(user_password: str) -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(pdf([PAGE_ONE])))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EncryptedDocumentError, match="password-protected"):
        load_document(_write(tmp_path, "locked.pdf", _encrypted("secret")))


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "restricted.pdf", _encrypted("")))
    assert doc.text == "\n".join(PAGE_ONE)


# --- pages ---------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "page"), [(0, 1), (9, 1), (10, 2), (19, 2), (20, 3), (500, 3)])
def test_page_at(offset: int, page: int) -> None:
    assert page_at((0, 10, 20), offset) == page
    doc = Document(source="a.pdf", title="a", text="x" * 30, sha256="x", pages=(0, 10, 20))
    assert page_at(doc, offset) == page


def test_page_at_without_pages_is_none() -> None:
    assert page_at((), 5) is None
    assert page_at(Document(source="a.txt", title="a", text="正文", sha256="x"), 0) is None


def test_pages_read_back_from_json_are_a_tuple() -> None:
    doc = Document(source="a.pdf", title="a", text="甲\n\n乙", sha256="x", pages=[0, 3])  # type: ignore[arg-type]
    assert doc.pages == (0, 3)


def test_table_rows_of_a_paged_document_keep_fields_and_get_a_page() -> None:
    table = "\n".join(" | ".join(row) + " |" for row in POLICY_ROWS)
    text = f"前言。\n\n{POLICY_CAPTION}\n{table}"
    doc = Document(source="a.pdf", title="a", text=text, sha256="x", pages=(0, 5))
    rows = [c for c in chunk_document(doc) if c.kind == "table_row"]
    assert dict(rows[0].metadata) == {
        "date": "2024年1月",
        "department": "国务院",
        "policy": "关于进一步优化政务服务的指导意见",
        "content": "探索应用自然语言大模型等技术。",
        "page": "2",
    }
    assert "page" not in rows[0].search_text


# --- DOCX ----------------------------------------------------------------------------


def test_docx_paragraphs_headings_and_tables_in_body_order(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "policy.docx", _policy_docx()))
    assert doc.text == (
        "# 我国大模型行业相关政策\n\n"
        "近年来，国家陆续出台多项政策支持大模型行业发展。\n\n"
        f"{POLICY_CAPTION}\n\n"
        "| 发布时间 | 发布部门 | 政策名称 | 主要内容 |\n"
        "|---|---|---|---|\n"
        "| 2024年1月 | 国务院 | 关于进一步优化政务服务的指导意见 "
        "| 探索应用自然语言大模型等技术。 |\n"
        "| 2024年4月 | 国家矿山安监局 | 关于矿山智能化的指导意见 | 加快矿山大模型的算法优化。 |\n\n"
        "## 地方政策\n\n"
        "资料来源：观研天下整理。"
    )
    assert doc.title == "我国大模型行业相关政策"
    assert doc.pages == ()


def test_docx_title_comes_from_its_properties(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "p.docx", _policy_docx(title="大模型政策汇编")))
    assert doc.title == "大模型政策汇编"


def test_docx_table_rows_chunk_like_the_bundled_reports(tmp_path: Path) -> None:
    from_docx = load_document(_write(tmp_path, "policy.docx", _policy_docx()))
    # The same table as the reports in corpus/ write it: `a | b |` lines under a caption.
    table = "\n".join(" | ".join(row) + " |" for row in POLICY_ROWS)
    from_txt = load_bytes("policy.txt", f"{POLICY_CAPTION}\n{table}\n".encode())
    docx_rows = [c for c in chunk_document(from_docx) if c.kind == "table_row"]
    txt_rows = [c for c in chunk_document(from_txt) if c.kind == "table_row"]
    assert len(docx_rows) == 2
    assert [dict(c.metadata) for c in docx_rows] == [dict(c.metadata) for c in txt_rows]
    assert [c.search_text for c in docx_rows] == [c.search_text for c in txt_rows]
    assert all(c.context == POLICY_CAPTION for c in docx_rows)
    assert docx_rows[0].metadata["department"] == "国务院"


def test_docx_cell_pipes_and_line_breaks_stay_inside_the_cell(tmp_path: Path) -> None:
    document = docx.Document()
    table = document.add_table(rows=2, cols=2)
    for n, value in enumerate(["名称", "说明", "A|B", "第一行\n第二行"]):
        table.cell(n // 2, n % 2).text = value
    doc = load_bytes("cells.docx", _docx_bytes(document))
    assert doc.text.splitlines()[-1] == "| A｜B | 第一行 第二行 |"


def test_docx_without_text_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyDocumentError, match="blank.docx holds no text"):
        load_document(_write(tmp_path, "blank.docx", _docx_bytes(docx.Document())))


@pytest.mark.parametrize("data", [b"PK\x03\x04broken zip", _policy_docx()[:500]])
def test_corrupt_docx_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UnreadableDocumentError, match="bad.docx is not a readable DOCX file"):
        load_document(_write(tmp_path, "bad.docx", data))


# --- HTML ----------------------------------------------------------------------------

SEMANTIC_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>实施意见_部门文件_中国政府网</title>
<style>body { color: #333 }</style><script>var banner = "脚本内容";</script></head>
<body>
<header><div class="logo">中国政府网</div></header>
<nav><a href="/">首页</a> | <a href="/zc">政策</a></nav>
<main><article>
<header><h1>关于推动未来产业创新发展的实施意见</h1></header>
<p>为把握新一轮科技革命和产业变革机遇，<a href="#">加快</a>发展未来产业，制定本意见。</p>
<!-- 注释不是正文 -->
<h2>一、总体要求</h2>
<p>到2025年，未来产业技术创新、产业培育、安全治理等全面发展。<br>到2027年，未来产业综合实力显著提升。</p>
<p>表1 重点任务分工</p>
<table><tr><th>任务</th><th>牵头部门</th><th>完成时间</th></tr>
<tr><td>建设超大规模智算中心</td><td>工业和信息化部</td><td>2025年</td></tr>
<tr><td>开展大模型创新算法研究</td><td>科技部</td><td>2026年</td></tr></table>
<footer>责任编辑：王某</footer>
</article></main>
<aside>相关文章：<a href="#">另一篇</a></aside>
<footer>版权所有：中国政府网</footer>
</body></html>"""


def test_html_main_text_keeps_headings_and_tables(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "page.html", SEMANTIC_PAGE.encode()))
    assert doc.text == (
        "# 关于推动未来产业创新发展的实施意见\n\n"
        "为把握新一轮科技革命和产业变革机遇，加快发展未来产业，制定本意见。\n\n"
        "## 一、总体要求\n\n"
        "到2025年，未来产业技术创新、产业培育、安全治理等全面发展。\n\n"
        "到2027年，未来产业综合实力显著提升。\n\n"
        "表1 重点任务分工\n\n"
        "| 任务 | 牵头部门 | 完成时间 |\n"
        "|---|---|---|\n"
        "| 建设超大规模智算中心 | 工业和信息化部 | 2025年 |\n"
        "| 开展大模型创新算法研究 | 科技部 | 2026年 |\n\n"
        "责任编辑：王某"
    )
    assert doc.title == "关于推动未来产业创新发展的实施意见"
    rows = [c for c in chunk_document(doc) if c.kind == "table_row"]
    assert [c.metadata["牵头部门"] for c in rows] == ["工业和信息化部", "科技部"]
    assert all(c.context == "表1 重点任务分工" for c in rows)


def test_html_without_semantic_tags_drops_navigation_by_class(tmp_path: Path) -> None:
    page = """<html><head><title>算力券政策解读</title></head><body>
    <div class="nav"><a>首页</a><a>新闻</a></div>
    <div class="breadcrumb">首页 &gt; 政策解读</div>
    <table width="100%"><tr><td>
      <div class="content"><p>各地陆续推出算力券，降低企业使用智能算力的成本。</p></div>
    </td></tr></table>
    <div id="footer">网站标识码 bm01000001</div>
    <script>track();</script>
    </body></html>"""
    doc = load_bytes("page.htm", page.encode())
    assert doc.text == "各地陆续推出算力券，降低企业使用智能算力的成本。"
    assert doc.title == "算力券政策解读"


def test_html_spanned_cells_line_up_with_their_columns() -> None:
    page = """<html><body><p>各省政策</p><table>
    <tr><th>省市</th><th colspan="2">政策</th></tr>
    <tr><td rowspan="2">北京市</td><td>通用人工智能若干措施</td><td>2023年5月</td></tr>
    <tr><td>算力基础设施方案</td><td>2024年4月</td></tr>
    </table></body></html>"""
    doc = load_bytes("spans.html", page.encode())
    assert doc.text.splitlines()[-4:] == [
        "| 省市 | 政策 | 政策 |",
        "|---|---|---|",
        "| 北京市 | 通用人工智能若干措施 | 2023年5月 |",
        "| 北京市 | 算力基础设施方案 | 2024年4月 |",
    ]


def test_gbk_html_is_decoded() -> None:
    page = '<html><head><meta charset="gb2312"></head><body><p>政务服务大模型</p></body></html>'
    doc = load_bytes("gbk.html", page.encode("gbk"))
    assert doc.text == "政务服务大模型"


def test_html_of_navigation_only_is_empty() -> None:
    page = "<html><body><nav><a>首页</a></nav><script>x()</script></body></html>"
    with pytest.raises(EmptyDocumentError, match="nav.html holds no text"):
        load_bytes("nav.html", page.encode())


# --- text encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16", "utf-16-le", "utf-16-be"]
)
@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_text_in_each_encoding(tmp_path: Path, encoding: str, suffix: str) -> None:
    data = REPORT.encode(encoding)
    doc = load_document(_write(tmp_path, f"report{suffix}", data))
    assert doc.text == REPORT
    assert doc.title == "关于推动未来产业创新发展的实施意见"


def test_gb18030_only_characters_are_read(tmp_path: Path) -> None:
    text = "㐀䶵𠀀 扩展汉字与𪚥字。\n"  # CJK Extension A and B: outside GBK, inside GB18030
    assert load_document(_write(tmp_path, "ext.txt", text.encode("gb18030"))).text == text


def test_crlf_line_ends_are_unified(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path, "crlf.txt", "标题\r\n正文。\r\n".encode("gbk")))
    assert doc.text == "标题\n正文。\n"


# --- errors, dispatch ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["empty.txt", "empty.md", "empty.pdf", "empty.docx", "empty.html"])
def test_empty_files_are_refused(name: str) -> None:
    with pytest.raises(EmptyDocumentError, match=f"{name} is empty"):
        load_bytes(name, b"")


@pytest.mark.parametrize("data", [b" \n\t\n", "\ufeff".encode(), b"\xff\xfe", " ".encode("utf-16")])
@pytest.mark.parametrize("name", ["blank.txt", "blank.html"])
def test_blank_text_files_are_refused(name: str, data: bytes) -> None:
    with pytest.raises(EmptyDocumentError, match=f"{name} holds no text"):
        load_bytes(name, data)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (50, 50), "red").save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("data", [random.Random(5).randbytes(2000), _png()], ids=["noise", "png"])
def test_undecodable_text_is_refused(data: bytes) -> None:
    with pytest.raises(UnreadableDocumentError, match="binary.txt cannot be decoded"):
        load_bytes("binary.txt", data)


@pytest.mark.parametrize("name", ["old.doc", "slides.pptx", "README"])
def test_unknown_formats_are_refused(name: str) -> None:
    with pytest.raises(
        UnsupportedFormatError, match=r"unsupported format.*readable: \.docx, \.htm, \.html"
    ):
        load_bytes(name, b"data")


def test_format_errors_are_corpus_errors() -> None:
    for error in (
        EmptyDocumentError,
        EncryptedDocumentError,
        ScannedPDFError,
        UnreadableDocumentError,
        UnsupportedFormatError,
    ):
        assert issubclass(error, CorpusError)


def test_load_bytes_names_the_source_and_hashes_the_raw_bytes() -> None:
    data = REPORT.encode("gbk")
    doc = load_bytes("上传的报告.txt", data)
    assert doc.source == "上传的报告.txt"
    assert doc.sha256 == hashlib.sha256(data).hexdigest()


def test_corpus_files_list_every_readable_format(tmp_path: Path) -> None:
    names = ["a.txt", "b.md", "c.PDF", "d.docx", "e.html", "f.htm", "g.markdown"]
    for name in [*names, "h.doc", "i.xlsx", "notes"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.txt").mkdir()
    assert [p.name for p in corpus_files(tmp_path)] == sorted(names)


def test_pdf_lines_wrapped_at_the_margin_are_joined(tmp_path: Path) -> None:
    sentence = (
        "为深入贯彻党中央国务院决策部署，加快推动未来产业创新发展，现提出如下实施意见。"
        "到2025年，未来产业技术创新、产业培育、安全治理等全面发展，部分领域达到国际先进水平。"
    )
    wrapped = [sentence[i : i + 30] for i in range(0, len(sentence), 30)]
    page = ["关于推动未来产业创新发展的实施意见", *wrapped, "一、总体要求"]
    doc = load_document(_write(tmp_path, "wrapped.pdf", pdf([page])))
    assert doc.text.split("\n") == ["关于推动未来产业创新发展的实施意见", sentence, "一、总体要求"]
    chunks = chunk_document(doc)
    assert any(c.text == sentence or sentence in c.text for c in chunks)


def test_a_docx_that_unpacks_to_hundreds_of_megabytes_is_refused(tmp_path: Path) -> None:
    data = io.BytesIO(docx_bytes(["正文。"]))
    with zipfile.ZipFile(data, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("word/media/padding.bin", "w") as padding:
            block = bytes(1024 * 1024)
            for _ in range(MAX_UNPACKED_BYTES // len(block) + 1):
                padding.write(block)
    assert len(data.getvalue()) < 2 * 1024 * 1024  # small on the wire
    with pytest.raises(UnreadableDocumentError, match="unpacks to"):
        load_document(_write(tmp_path, "bomb.docx", data.getvalue()))
