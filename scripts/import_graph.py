"""Draw the package and module import graph of qsgd, bnn and qkernels from the code itself.

Parses every module with ``ast`` (nothing is imported or run), collects the imports between our
three packages (top-level and function-level alike), and prints a Mermaid diagram of the
packages with their arrows and a table of every cross-package module edge (``--sizes`` lists
the modules over 600 lines instead). ``docs/architecture.md`` holds its output between the markers
``<!-- import-graph:start -->`` and ``<!-- import-graph:end -->``; a test checks it is current.

    python scripts/import_graph.py            # print the generated block
    python scripts/import_graph.py --write    # refresh docs/architecture.md in place
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qsgd", "bnn", "qkernels")
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- import-graph:start -->", "<!-- import-graph:end -->"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Modules of our packages that ``path`` imports (absolute imports only, as the code uses)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def collect() -> tuple[dict[str, set[str]], dict[str, int]]:
    edges: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = module_name(path)
            sizes[name] = len(path.read_text(encoding="utf-8").splitlines())
            edges[name] |= imports_of(path) - {name}
    return edges, sizes


def render() -> str:
    edges, sizes = collect()
    pkg_edges: dict[tuple[str, str], int] = defaultdict(int)
    cross: list[tuple[str, str]] = []
    for src, targets in edges.items():
        for dst in targets:
            a, b = src.split(".")[0], dst.split(".")[0]
            if a != b:
                pkg_edges[(a, b)] += 1
                cross.append((src, dst))
    lines = [START, "", "```mermaid", "graph LR"]
    for (a, b), n in sorted(pkg_edges.items()):
        lines.append(f"    {a} -->|{n}| {b}")
    lines += ["```", "", "| module | imports from another package |", "|---|---|"]
    by_src: dict[str, list[str]] = defaultdict(list)
    for src, dst in sorted(cross):
        by_src[src].append(dst)
    lines += [f"| `{src}` | {', '.join(f'`{d}`' for d in dsts)} |" for src, dsts in by_src.items()]
    lines += ["", END]
    return "\n".join(lines)


def long_modules(limit: int = 600) -> list[tuple[str, int]]:
    """Modules longer than ``limit`` lines, longest first."""
    _, sizes = collect()
    return sorted(((m, n) for m, n in sizes.items() if n > limit), key=lambda mn: -mn[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"refresh {DOC.relative_to(ROOT)}")
    parser.add_argument("--sizes", action="store_true", help="list modules over 600 lines")
    args = parser.parse_args(argv)
    if args.sizes:
        for name, n in long_modules():
            print(f"{n:6d}  {name}")
        return 0
    block = render()
    if not args.write:
        print(block)
        return 0
    text = DOC.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"import_graph: error: {DOC} has no {START} ... {END} block", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + block + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
