"""Gather the experiment JSONs under a results folder into ``summary.json`` and its table.

Every ``*.json`` below ``ROOT`` (default ``results``) written by :mod:`bnn.experiments` under
the current fair protocol becomes one entry of
``{"experiments": {name: {"methods": {key: {"test_acc_mean", "test_acc_std", "seeds", "epochs",
"selection", ...}}}}}``; files of earlier protocols are listed under ``"skipped"``. The
markdown table (one row per experiment, test accuracy at the best-validation epoch,
mean ± std over seeds) goes next to it (``summary.md``).

Run from the repository root::

    python scripts/summarize_results.py results --out results/summary.json --readme README.md

``--readme`` also replaces the table between the ``<!-- summary table -->`` and
``<!-- end summary table -->`` lines of that file (a test checks they agree).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bnn.experiments import summary_index, summary_markdown  # noqa: E402


START, END = "<!-- summary table -->", "<!-- end summary table -->"


def replace_table(text: str, table: str) -> str:
    """``text`` with the lines between the ``START`` and ``END`` marker lines set to ``table``.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    lines = text.splitlines(keepends=True)
    try:
        i = next(k for k, line in enumerate(lines) if line.strip() == START)
        j = next(k for k, line in enumerate(lines) if line.strip() == END and k > i)
    except StopIteration:
        raise ValueError(f"the file needs a line {START!r} followed by a line {END!r}") from None
    body = table if table.endswith("\n") else table + "\n"
    return "".join(lines[: i + 1]) + body + "".join(lines[j:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default="results", help="folder searched for *.json")
    parser.add_argument("--out", default=None, help="summary file (default ROOT/summary.json)")
    parser.add_argument(
        "--readme", default=None, help="also write the table into this file between its markers"
    )
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(f"error: root must be an existing folder (got {str(root)!r})", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else root / "summary.json"
    paths = [
        p
        for p in sorted(root.rglob("*.json"))
        if p.resolve() != out.resolve() and p.name != "summary.json"
    ]
    try:
        index = summary_index(paths)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = summary_markdown(index)
    if args.readme:
        try:
            text = replace_table(Path(args.readme).read_text(), table)
        except (OSError, ValueError) as exc:
            print(f"error: --readme: {exc}", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.readme:
        Path(args.readme).write_text(text)
    out.write_text(json.dumps(index, indent=1) + "\n")
    out.with_suffix(".md").write_text(summary_markdown(index))
    print(summary_markdown(index))
    print(
        f"wrote {out} and {out.with_suffix('.md')} ({len(index['experiments'])} experiments, "
        f"{len(index['skipped'])} files of other protocols skipped)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
