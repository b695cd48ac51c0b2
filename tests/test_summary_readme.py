"""The README's results table is the one generated from results/summary.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bnn.experiments import summary_markdown

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location(
        "summarize_results", ROOT / "scripts" / "summarize_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_table_is_generated_from_summary_json():
    script = _script()
    index = json.loads((ROOT / "results" / "summary.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert script.replace_table(readme, summary_markdown(index)) == readme, (
        "README.md's results table is stale: run "
        "python scripts/summarize_results.py results --out results/summary.json --readme README.md"
    )


def test_replace_table_needs_both_markers_in_order():
    script = _script()
    text = f"a\n{script.START}\nold\n{script.END}\nb\n"
    assert script.replace_table(text, "new") == f"a\n{script.START}\nnew\n{script.END}\nb\n"
    with pytest.raises(ValueError, match="needs a line"):
        script.replace_table(f"{script.END}\n{script.START}\n", "new")
    with pytest.raises(ValueError, match="needs a line"):
        script.replace_table("no markers\n", "new")
