"""Clique embeddings of dense problems on a QPU working graph, cached in memory and on disk.

Per-neuron problems of a layer have the same dense graph at every step, so one clique embedding
is computed per (working graph, problem size, embedding seed) with ``minorminer.busclique`` and
reused: from memory, and from an on-disk cache (:func:`embedding_cache_dir`: ``$QSGD_CACHE_DIR``
or ``~/.cache/qsgd/embeddings``, atomic writes) so new processes and Dask workers skip the
search. The cache key is a hash of the working graph's qubits and couplers
(:func:`working_graph_key`); the chip graph is built only when an embedding must be searched.
:func:`embedding_pack` also finds several disjoint embeddings for packing
(:mod:`qsgd.samplers.packing`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qsgd.errors import BackendUnavailableError, ProblemTooLargeError

__all__ = [
    "Embedding",
    "clique_embedding",
    "embedding_pack",
    "largest_clique_size",
    "embedding_cache_info",
    "embedding_cache_dir",
    "disk_cache_info",
    "clear_embedding_cache",
    "working_graph_key",
    "graph_key_of",
    "CACHE_ENV",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "backend 'dwave' needs dwave-system: pip install 'qsgd[dwave]'"


def _import_dwave() -> tuple[Any, Any]:
    """``(dwave.system, minorminer.busclique)``, or BackendUnavailableError naming the extra."""
    try:
        import dwave.system as dsys
        import minorminer.busclique as busclique
    except ModuleNotFoundError as exc:
        raise BackendUnavailableError(_INSTALL_HINT) from exc
    return dsys, busclique


Embedding = dict[int, tuple[int, ...]]


@dataclass
class _CacheStats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    disk_writes: int = 0


# (working-graph key, n, seed) -> (disjoint clique embeddings found so far, search exhausted)
_PACKS: dict[tuple[str, int, int], tuple[list[Embedding], bool]] = {}
_STATS = _CacheStats()
_CACHE_VERSION = 1
_DISK_WARNED = False

#: Environment variable naming the cache folder (``off`` or empty: no disk cache).
CACHE_ENV = "QSGD_CACHE_DIR"


def embedding_cache_dir() -> Path | None:
    """Folder of the on-disk embedding cache, or ``None`` when it is switched off.

    ``$QSGD_CACHE_DIR/embeddings`` when :data:`CACHE_ENV` is set (``off`` or an empty value
    switches the disk cache off), else ``$XDG_CACHE_HOME/qsgd/embeddings``, else
    ``~/.cache/qsgd/embeddings``.
    """
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in ("", "off", "none", "0"):
            return None
        return Path(value).expanduser() / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "qsgd" / "embeddings"


def working_graph_key(nodes: Any, edges: Any) -> str:
    """A hash of a working graph: SHA-256 of its sorted qubits and sorted couplers.

    Two solvers (or a solver before and after a qubit was taken offline) get the same key only
    when their working graphs are identical, so a cached embedding is valid wherever its key
    matches.
    """
    h = hashlib.sha256()
    h.update(np.asarray(sorted(int(q) for q in nodes), dtype=np.int64).tobytes())
    pairs = sorted((min(int(u), int(v)), max(int(u), int(v))) for u, v in edges)
    h.update(np.asarray(pairs, dtype=np.int64).reshape(-1).tobytes())
    return h.hexdigest()


def graph_key_of(target: Any) -> str:
    """:func:`working_graph_key` of a structured sampler (``nodelist``/``edgelist``) or a graph."""
    if hasattr(target, "nodelist") and hasattr(target, "edgelist"):
        return working_graph_key(target.nodelist, target.edgelist)
    return working_graph_key(target.nodes, target.edges)


def embedding_cache_info() -> dict[str, int]:
    """Counters of the clique-embedding cache: ``hits``, ``misses`` (searches run) and ``size``."""
    return {"hits": _STATS.hits, "misses": _STATS.misses, "size": len(_PACKS)}


def disk_cache_info() -> dict[str, Any]:
    """The disk cache's folder (``None``: off), and the loads and writes of this process."""
    folder = embedding_cache_dir()
    return {
        "dir": None if folder is None else str(folder),
        "disk_hits": _STATS.disk_hits,
        "disk_writes": _STATS.disk_writes,
    }


def clear_embedding_cache() -> None:
    """Forget all embeddings held in memory and reset the counters (the disk cache stays)."""
    _PACKS.clear()
    _LARGEST.clear()
    _STATS.hits = _STATS.misses = _STATS.disk_hits = _STATS.disk_writes = 0


def _disk_path(key: tuple[str, int, int]) -> Path | None:
    folder = embedding_cache_dir()
    if folder is None:
        return None
    graph, n, seed = key
    return folder / f"clique-{graph[:32]}-n{n}-s{seed}.json"


def _disk_load(key: tuple[str, int, int]) -> tuple[list[Embedding], bool] | None:
    """The cached packing of ``key`` from disk; ``None`` if absent, unreadable or not ours."""
    path = _disk_path(key)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if (data.get("version"), data.get("graph"), data.get("n"), data.get("seed")) != (
            _CACHE_VERSION,
            key[0],
            key[1],
            key[2],
        ):
            return None
        embs = [
            {v: tuple(int(q) for q in chain) for v, chain in enumerate(e)}
            for e in data["embeddings"]
        ]
        if any(len(e) != key[1] or not all(e.values()) for e in embs):
            return None
        return embs, bool(data["exhausted"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.debug("ignoring unreadable embedding cache file %s: %s", path, exc)
        return None


def _disk_save(key: tuple[str, int, int], embs: list[Embedding], exhausted: bool) -> None:
    """Write the packing of ``key`` atomically (temporary file, then ``os.replace``)."""
    global _DISK_WARNED
    path = _disk_path(key)
    if path is None:
        return
    data = {
        "version": _CACHE_VERSION,
        "graph": key[0],
        "n": key[1],
        "seed": key[2],
        "exhausted": bool(exhausted),
        "embeddings": [[list(e[v]) for v in range(key[1])] for e in embs],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _STATS.disk_writes += 1
    except OSError as exc:  # a read-only home: work on without the disk cache
        if not _DISK_WARNED:
            _DISK_WARNED = True
            logger.warning(
                "cannot write the embedding cache %s (%s); embeddings are recomputed in every "
                "process (set %s to a writable folder, or to 'off')",
                path.parent,
                exc,
                CACHE_ENV,
            )


def embedding_pack(
    n: int,
    *,
    graph_key: str,
    graph: Any,
    seed: int = 0,
    max_problems: int | None = None,
) -> tuple[list[Embedding], bool]:
    """Disjoint clique embeddings of ``K_n`` on a working graph, from the cache when possible.

    The cache is keyed by ``(graph_key, n, seed)``: in memory, then on disk
    (:func:`embedding_cache_dir`), so a new process or a Dask worker reuses the search of an
    earlier one. ``graph`` is only built (called, when it is a callable) when the cached
    embeddings do not suffice, so a cache hit never rebuilds the chip graph.

    The search is greedy: ``minorminer.busclique.find_clique_embedding`` on the working graph,
    remove its qubits, repeat on the rest until ``max_problems`` are found or none fits. The
    first embedding is the one the single-problem path uses.

    Args:
        n: Spins per problem.
        graph_key: :func:`working_graph_key` of the working graph.
        graph: The working graph (a dwave-networkx graph), or a zero-argument callable building it.
        seed: Seed of the clique search.
        max_problems: Stop after this many (``None``: as many as fit).

    Returns:
        ``(embeddings, cache_hit)``; fewer than ``max_problems`` embeddings when no more fit.
    """
    key = (str(graph_key), int(n), int(seed))
    found, exhausted = _PACKS.get(key, ([], False))
    if not found and not exhausted:
        loaded = _disk_load(key)
        if loaded is not None:
            found, exhausted = loaded
            _PACKS[key] = loaded
            _STATS.disk_hits += 1
    if exhausted or (max_problems is not None and len(found) >= max_problems):
        _STATS.hits += 1
        return list(found[: max_problems or len(found)]), True
    _, busclique = _import_dwave()
    g = graph() if callable(graph) else graph
    g = g.copy()
    g.remove_nodes_from({q for emb in found for chain in emb.values() for q in chain})
    found = list(found)
    while max_problems is None or len(found) < max_problems:
        emb = busclique.find_clique_embedding(int(n), g, seed=int(seed), use_cache=False)
        if len(emb) != n:
            exhausted = True
            break
        emb = {int(v): tuple(int(q) for q in chain) for v, chain in emb.items()}
        found.append(emb)
        g.remove_nodes_from({q for chain in emb.values() for q in chain})
    _STATS.misses += 1
    _PACKS[key] = (found, exhausted)
    _disk_save(key, found, exhausted)
    return list(found), False


_LARGEST: dict[str, int] = {}


def largest_clique_size(graph_key: str, graph: Any) -> int:
    """Size of the largest dense problem that embeds on a working graph (cached like embeddings).

    Args:
        graph_key: :func:`working_graph_key` of the graph.
        graph: The working graph, or a zero-argument callable building it (called on a miss).
    """
    if graph_key in _LARGEST:
        return _LARGEST[graph_key]
    folder = embedding_cache_dir()
    path = None if folder is None else folder / f"largest-{graph_key[:32]}.json"
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("graph") == graph_key and int(data["largest"]) >= 0:
                _LARGEST[graph_key] = int(data["largest"])
                return _LARGEST[graph_key]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    _, busclique = _import_dwave()
    g = graph() if callable(graph) else graph
    size = len(busclique.busgraph_cache(g).largest_clique())
    _LARGEST[graph_key] = size
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w") as fh:
                json.dump({"version": _CACHE_VERSION, "graph": graph_key, "largest": size}, fh)
            os.replace(tmp, path)
        except OSError:
            pass  # _disk_save warns once about an unwritable folder
    return size


def clique_embedding(
    n: int,
    target_graph: Any,
    solver_id: str | None = None,
    seed: int = 0,
    *,
    graph_key: str | None = None,
) -> tuple[Embedding, bool]:
    """A clique embedding of spins ``0..n-1`` into ``target_graph``, cached per (graph, n, seed).

    Args:
        n: Number of logical spins.
        target_graph: The QPU working graph (a dwave-networkx graph with topology attributes),
            or a zero-argument callable building it (called only on a cache miss).
        solver_id: Named in the error message (the cache is keyed by the graph, not the name).
        seed: Seed of minorminer's clique search.
        graph_key: :func:`working_graph_key` of the graph (computed from ``target_graph``
            when not given).

    Returns:
        ``(embedding, cache_hit)``; ``embedding[i]`` is the chain of qubits of spin ``i``.

    Raises:
        ProblemTooLargeError: no clique of size ``n`` fits; names the largest that does and
            suggests ``max_block_vars``.
    """
    if graph_key is None:
        target_graph = target_graph() if callable(target_graph) else target_graph
        graph_key = graph_key_of(target_graph)
    embs, hit = embedding_pack(
        n, graph_key=graph_key, graph=target_graph, seed=seed, max_problems=1
    )
    if not embs:
        _, busclique = _import_dwave()
        g = target_graph() if callable(target_graph) else target_graph
        largest = len(busclique.busgraph_cache(g).largest_clique())
        raise ProblemTooLargeError(
            f"a dense problem of {n} variables does not embed on solver {solver_id!r} "
            f"(largest clique embedding: {largest} variables); set max_block_vars <= {largest}"
        )
    return embs[0], hit
