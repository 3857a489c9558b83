"""The import contract the tree shows: arrows point one way between the four jobs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every zhice module a file imports, at any depth (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in {"ingest", "service"}}


MODULES = {
    _module(p): _imports(p) for pkg in ("ingest", "service") for p in (ROOT / pkg).rglob("*.py")
}

# (importer prefix, forbidden prefix, why)
RULES = [
    ("ingest", "service", "the write path never imports the read path"),
    ("service.answer", "service.api", "answering knows no HTTP"),
    ("service.answer", "service.eval", "answering knows no evaluation tooling"),
    ("service.answer", "service.cli", "answering knows no command line"),
    ("service.api", "service.eval", "HTTP and evaluation are separate jobs"),
    ("service.eval", "service.api", "evaluation asks over answering or HTTP, not the app"),
    ("service.api", "service.cli", "the app does not import the command line"),
    ("service.eval", "service.cli", "evaluation does not import the command line"),
    ("service.config", "service.answer", "settings are a leaf"),
    ("service.errors", "service.api", "error classes know no web framework"),
]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden", "why"), RULES)
def test_import_contract(importer: str, forbidden: str, why: str) -> None:
    """No module under `importer` imports anything under `forbidden`."""
    assert any(_within(m, importer) for m in MODULES), f"no module under {importer}"
    broken = sorted(
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if _within(module, importer)
        for name in names
        if _within(name, forbidden)
    )
    assert not broken, f"{why}: {broken}"


def test_routes_do_not_import_routes() -> None:
    """Each route module stands alone; what two share lives outside routes/."""
    broken = sorted(
        f"{module} imports {name}"
        for module, names in MODULES.items()
        if _within(module, "service.api.routes") and module != "service.api.routes"
        for name in names
        if _within(name, "service.api.routes")
    )
    assert not broken, broken


def test_heavy_libraries_have_one_owner() -> None:
    """fastapi only in service.api, faiss only in ingest.store, jieba only in the tokeniser,
    pymilvus only in ingest.milvus."""
    owners = {
        "fastapi": "service.api",
        "faiss": "ingest.store",
        "jieba": "ingest.tokenize",
        "pymilvus": "ingest.milvus",
        "milvus_lite": "ingest.milvus",
    }
    for path in [*ROOT.joinpath("ingest").rglob("*.py"), *ROOT.joinpath("service").rglob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                lib = name.split(".")[0]
                if lib in owners:
                    assert _within(_module(path), owners[lib]), f"{path} imports {lib}"


def test_embedding_runtimes_have_one_owner() -> None:
    """sentence_transformers and onnxruntime's runtime only in ingest.embedding; the export
    module may use onnxruntime's offline quantisation tool, nothing else of it."""
    allowed = {
        "sentence_transformers": {"ingest.embedding"},
        "onnxruntime": {"ingest.embedding"},
        "onnxruntime.quantization": {"ingest.onnx_export"},
    }
    for path in [*ROOT.joinpath("ingest").rglob("*.py"), *ROOT.joinpath("service").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                owners = allowed.get(name) or allowed.get(name.split(".")[0])
                if owners is not None:
                    assert _module(path) in owners, f"{path} imports {name}"
