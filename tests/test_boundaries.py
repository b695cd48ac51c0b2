"""Package boundaries: the core never imports the application; qkernels never pulls in dimod."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qsgd

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "qsgd").rglob("*.py")), ids=lambda p: p.name)
def test_qsgd_never_imports_bnn_or_qkernels(path):
    assert not _imported_top_levels(path) & {"bnn", "qkernels"}


@pytest.mark.parametrize("path", sorted((ROOT / "qkernels").rglob("*.py")), ids=lambda p: p.name)
def test_qkernels_never_imports_bnn(path):
    assert "bnn" not in _imported_top_levels(path)


def test_importing_qkernels_or_qsgd_errors_does_not_import_dimod():
    code = (
        "import sys, qkernels, qsgd.errors, qsgd.binary\n"
        "assert 'dimod' not in sys.modules, sorted(m for m in sys.modules if 'dimod' in m)[:3]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_public_api_resolves_from_the_package():
    for name in qsgd.__all__:
        assert getattr(qsgd, name) is not None, name
    assert qsgd.QPSBGD.__module__ == "qsgd.optimizer"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        qsgd.nope  # noqa: B018


def test_architecture_doc_shows_the_current_import_graph():
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts/import_graph.py")
    graph = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(graph)
    doc = (ROOT / "docs/architecture.md").read_text(encoding="utf-8")
    assert graph.render() in doc, "stale: run python scripts/import_graph.py --write"
    assert "qsgd -->" not in graph.render()  # the core has no outgoing package arrow
