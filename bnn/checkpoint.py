"""Atomic, code-free checkpoints of a training run.

A checkpoint is one ``torch.save`` file holding only tensors and primitive containers
(dict, list, tuple, str, int, float, bool, None), so it loads with
``torch.load(weights_only=True)``: no code runs at load time. Numpy arrays (e.g. the numpy
RNG key) are stored as ``{"__ndarray__": tensor, "dtype": str}`` and restored on load.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed and
``fsync``-ed, the current ``checkpoint.pt`` is kept as ``checkpoint.prev.pt``, and the
temporary file is renamed over ``checkpoint.pt`` with :func:`os.replace`. A crash at any
point leaves at least one complete checkpoint; a checkpoint that fails to load raises
:class:`CheckpointError` naming the file and the intact previous one.

Example:
    >>> import tempfile
    >>> run_dir = tempfile.mkdtemp()
    >>> model = torch.nn.Linear(2, 1)
    >>> path = save_checkpoint(run_dir, {"epoch": 1, "model": model.state_dict()})
    >>> state = load_checkpoint(run_dir)
    >>> state["epoch"], torch.equal(state["model"]["weight"], model.weight.detach())
    (1, True)
"""

from __future__ import annotations

import io
import os
import random
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qsgd.errors import QSGDError

__all__ = [
    "CHECKPOINT_NAME",
    "PREVIOUS_NAME",
    "FORMAT_VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_path",
    "to_safe",
    "from_safe",
    "capture_rng_state",
    "restore_rng_state",
]

CHECKPOINT_NAME = "checkpoint.pt"
PREVIOUS_NAME = "checkpoint.prev.pt"
FORMAT_VERSION = 1


class CheckpointError(QSGDError, RuntimeError):
    """A checkpoint is missing, corrupt, truncated or holds a value that cannot be stored."""


# --------------------------------------------------------------------- atomic files
def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Files written through a temporary file get the mode open() would give them (0666 less the
# umask), not mkstemp's private 0600.
_FILE_MODE = 0o666 & ~_current_umask()


def _mkstemp_beside(path: Path) -> tuple[int, str]:
    """A temporary file next to ``path`` (same folder, so ``os.replace`` is atomic)."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):
        try:
            os.fchmod(fd, _FILE_MODE)
        except OSError:  # pragma: no cover - e.g. a filesystem without modes
            pass
    return fd, tmp_name


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, whole.

    The bytes go to a temporary file in the same folder, which is flushed, ``fsync``-ed and
    renamed over ``path`` (:func:`os.replace`). On any error the temporary file is removed and
    ``path`` is left untouched.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    fd, tmp_name = _mkstemp_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


# --------------------------------------------------------------------- safe encoding
_ND = "__ndarray__"


def to_safe(obj: Any, _path: str = "state") -> Any:
    """Encode ``obj`` with only tensors and primitive containers (for ``weights_only`` loads).

    Numpy arrays become ``{"__ndarray__": tensor, "dtype": name}``; numpy scalars become
    Python numbers.

    Raises:
        CheckpointError: a value of another type; the message names its key path.
    """
    if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str | torch.Tensor | torch.Size):
        return obj
    if isinstance(obj, np.ndarray):
        dtype = obj.dtype.name
        data = obj.astype(np.int64) if obj.dtype in (np.uint16, np.uint32) else obj
        return {_ND: torch.from_numpy(np.ascontiguousarray(data).copy()), "dtype": dtype}
    if isinstance(obj, Mapping):
        return {k: to_safe(v, f"{_path}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_safe(v, f"{_path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(to_safe(v, f"{_path}[{i}]") for i, v in enumerate(obj))
    raise CheckpointError(
        f"{_path} cannot be stored in a checkpoint: type {type(obj).__name__} "
        "(expected tensors, numpy arrays, numbers, strings and dict/list/tuple of them)"
    )


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`."""
    if isinstance(obj, dict):
        if _ND in obj and set(obj) == {_ND, "dtype"}:
            return obj[_ND].numpy().astype(obj["dtype"])
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_safe(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(from_safe(v) for v in obj)
    return obj


# --------------------------------------------------------------------- RNG states
def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The global torch, numpy and Python RNG states (and ``generator``'s, if given)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(legacy=False),  # noqa: NPY002 - global state
        "python": random.getstate(),
    }
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def restore_rng_state(state: Mapping[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`capture_rng_state` captured (after :func:`from_safe`)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 - global state
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


# --------------------------------------------------------------------- checkpoints
def checkpoint_path(run_dir: str | os.PathLike[str]) -> Path:
    """``RUN_DIR/checkpoint.pt``."""
    return Path(run_dir) / CHECKPOINT_NAME


def save_checkpoint(run_dir: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Atomically write ``state`` as ``RUN_DIR/checkpoint.pt``, keeping the old one as
    ``checkpoint.prev.pt``.

    Args:
        run_dir: An existing folder.
        state: Tensors, numpy arrays, numbers, strings and containers of them.

    Returns:
        The checkpoint path.

    Raises:
        CheckpointError: ``state`` holds a value that cannot be stored (nothing is written).
    """
    run_dir = Path(run_dir)
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **to_safe(dict(state))}, buffer)
    data = buffer.getvalue()
    target = run_dir / CHECKPOINT_NAME
    fd, tmp_name = _mkstemp_beside(target)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.replace(target, run_dir / PREVIOUS_NAME)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(run_dir)
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint without executing code (``torch.load(weights_only=True)``).

    Args:
        path: A checkpoint file, or a run directory (its ``checkpoint.pt``).

    Returns:
        The stored state, numpy arrays restored.

    Raises:
        CheckpointError: the file is missing, corrupt, truncated or not a checkpoint; the
            message names the intact ``checkpoint.prev.pt`` when there is one.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    previous = path.with_name(PREVIOUS_NAME)
    hint = (
        f"; the previous checkpoint {str(previous)!r} is kept: move it to {str(path)!r} "
        "to resume from it"
        if previous.exists() and previous != path
        else ""
    )
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {str(path)!r}{hint}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} is not a file{hint}")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError, ...
        size = path.stat().st_size
        what = ": a truncated zip archive" if _truncated_zip(path) else ""
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a qsgd checkpoint{what} ({size} bytes; "
            f"got {type(exc).__name__}: {_load_error_detail(exc)}){hint}"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a qsgd checkpoint of format {FORMAT_VERSION} "
            f"(got format_version {found!r}){hint}"
        )
    return from_safe(state)


# Advice torch appends to load errors: "re-run with weights_only=False" (which would run the
# file's code: never for a file that failed the safe load), links and "please file an issue".
_ADVICE = re.compile(
    r"weights_only|weights only|trust|can still be loaded|alternatively|safe_globals|allowlist"
    r"|documentation|file an issue|https?://",
    re.I,
)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


def _truncated_zip(path: Path) -> bool:
    """True for a file that starts as a zip archive (as ``torch.save`` writes) but is incomplete."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04" and not zipfile.is_zipfile(path)


def _load_error_detail(exc: BaseException) -> str:
    """The substance of a ``torch.load`` error on one line: torch's advice and escapes removed.

    ``"Weights only load failed. ... Re-running torch.load with weights_only set to False will
    likely succeed ... Trying to load unsupported GLOBAL posix.system ... Check the
    documentation ..."`` becomes ``"Trying to load unsupported GLOBAL posix.system ..."``.
    """
    text = _ANSI.sub("", str(exc))
    kept = []
    for paragraph in re.split(r"\n\s*\n", text):
        sentences = re.split(r"(?<=[.:])\s+", " ".join(paragraph.split()))
        kept += [s for s in sentences if s and not _ADVICE.search(s)]
    detail = " ".join(kept)
    detail = "".join(ch for ch in detail if ch.isprintable())
    detail = re.sub(r"\bThis is an internal miniz error\..*", "", detail).strip()
    if not detail:
        detail = "the file ends early" if isinstance(exc, EOFError) else "no details"
    return detail if len(detail) <= 200 else detail[:197] + "..."
