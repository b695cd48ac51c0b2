"""A store of finished training runs, so that an interrupted experiment resumes where it stopped.

A paper experiment (:mod:`bnn.experiments`) is hundreds of independent training runs (search
trials and final seeds). With a store, every finished run is written to its own JSON file,
named by a key that fingerprints everything its numbers depend on: the task (name, dataset
shape, epochs, batch size, patience), the method (optimizer, fixed options), the
hyperparameters, the seed, the torch thread count, the protocol version and the source code of
``qsgd`` and ``bnn``. Rerunning the same command after an interruption finds those files and
skips the runs they hold; any change to the code or the settings changes the key, so a stale
run is never reused. Files are written atomically (temporary file, then rename), so a run
killed while writing leaves no partial record.

Example:
    >>> import tempfile
    >>> store = TrialStore(tempfile.mkdtemp())
    >>> key = store.key({"task": "t", "seed": 0})
    >>> store.get(key) is None
    True
    >>> store.put(key, {"test_accuracy": 0.9})
    >>> store.get(key)
    {'test_accuracy': 0.9}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["TrialStore", "code_fingerprint", "active_store", "use_store"]


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 over the source files of the ``qsgd`` and ``bnn`` packages (path and bytes).

    Computed once per process: the code a process runs is the code it imported at start.
    """
    import bnn
    import qsgd

    digest = hashlib.sha256()
    for package in (qsgd, bnn):
        root = Path(package.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


class TrialStore:
    """Finished runs as one JSON file each in ``root``, keyed by a fingerprint of their inputs.

    Args:
        root: Folder of the store (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"trial store must be a folder (got the file {str(self.root)!r})")

    def key(self, inputs: Mapping[str, Any]) -> str:
        """The key of a run: SHA-256 of its inputs (JSON, sorted keys) and the code fingerprint."""
        blob = json.dumps({"inputs": inputs, "code": code_fingerprint()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored record of ``key``, or None (also for an unreadable file, which is rerun)."""
        path = self._path(key)
        try:
            with path.open() as f:
                return json.load(f)["record"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, record: Mapping[str, Any], inputs: Mapping[str, Any] | None = None):
        """Write ``record`` under ``key`` atomically (with its ``inputs``, for the reader)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"inputs": inputs, "record": record}, f)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return len(list(self.root.glob("*.json"))) if self.root.is_dir() else 0

    def __repr__(self) -> str:
        return f"TrialStore({str(self.root)!r})"


_ACTIVE: dict[str, TrialStore | None] = {"store": None}


def active_store() -> TrialStore | None:
    """The store used by :func:`bnn.experiments.train_once` in this process (None: none)."""
    return _ACTIVE["store"]


def use_store(root: str | os.PathLike[str] | None) -> TrialStore | None:
    """Make ``root`` the active store of this process (None: no store); forked workers inherit it."""
    _ACTIVE["store"] = None if root is None else TrialStore(root)
    return _ACTIVE["store"]
