"""The dataset files shipped in ``bnn/datasets/``: where a loader reads its bytes, and the sha256 check.

A loader asks :func:`read_dataset_file` for a file name (``"a1a"``, ``"cora.npz"``, ...). With an
explicit ``root`` or ``$QSGD_DATA_ROOT`` the file is read from that folder as it is; otherwise
the copy shipped as package data is read with :mod:`importlib.resources`, decompressed and
checked against :data:`SHIPPED_DATASETS`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from importlib import resources
from pathlib import Path

from qsgd.errors import ConfigError, DataError

__all__ = ["SHIPPED_DATASETS", "default_data_root", "read_dataset_file"]

#: The dataset files shipped as package data in ``bnn/datasets/``: the file name the loaders
#: ask for -> (file in the package, sha256 of its *uncompressed* bytes). ``.gz`` files are
#: decompressed in memory; the hash is checked on every load. Origins, licences, citations:
#: ``bnn/datasets/PROVENANCE.md``.
SHIPPED_DATASETS: dict[str, tuple[str, str]] = {
    "a1a": ("a1a.gz", "eb54c45f1bdb51286f803dd092eb8202b44637a858fc6c4e533a2d64a0d94b4e"),
    "a1a.t": ("a1a.t.gz", "0212d0c4a3996fe6fb6a0ab54033d9f4fa4b60369b6e3bb141821d9ffc40c04d"),
    "cora.npz": ("cora.npz", "6414685312ed18c1fabc9b08acd28d1e52a88190916f53a24ed6a4a11908bf70"),
    "citeseer.npz": (
        "citeseer.npz",
        "111877eb93866f465d0ebc5ef2ddbcc7414cee22605fe0b215b15da49ce2968e",
    ),
}

_PACKAGE_DATA_DIR = "datasets"

_DATA_HINT = (
    "a1a/a1a.t (LIBSVM) and cora.npz/citeseer.npz (Planetoid) ship inside the package "
    "(bnn/datasets/); this folder was chosen with root=... (data.root in a run config) or "
    "$QSGD_DATA_ROOT: put your copy there, or unset both to use the shipped files"
)


def default_data_root() -> Path | None:
    """Folder the file-based loaders read when no ``root`` is given.

    ``$QSGD_DATA_ROOT`` if set and not empty; else ``None``, meaning the copies shipped in the
    package (``bnn/datasets/``).
    """
    env = os.environ.get("QSGD_DATA_ROOT")
    return Path(env) if env else None


def read_dataset_file(
    filename: str, root: str | os.PathLike[str] | None = None
) -> tuple[str, bytes]:
    """The uncompressed bytes of one dataset file, from ``root``, ``$QSGD_DATA_ROOT`` or the package.

    Args:
        filename: ``"a1a"``, ``"a1a.t"``, ``"cora.npz"`` or ``"citeseer.npz"`` (the keys of
            :data:`SHIPPED_DATASETS`); under a ``root`` any file name.
        root: Folder holding your own copy, read as it is (no hash check; the loaders still
            validate the contents). ``None``: ``$QSGD_DATA_ROOT`` if set, else the copy shipped
            in ``bnn/datasets/``, decompressed and checked against its sha256.

    Returns:
        ``(source, data)``: where the bytes were read (a path, for messages) and the bytes.

    Raises:
        FileNotFoundError: the file is not in the folder (the message names the path), or the
            installed package lacks its shipped copy.
        DataError: a shipped copy is not valid gzip or its sha256 differs (the message names
            the file, the expected and the computed hash).
        ConfigError: no folder is chosen and ``filename`` is not a shipped file.

    Example:
        >>> source, data = read_dataset_file("a1a")
        >>> data.split(b"\\n", 1)[0][:8]
        b'-1 3:1 1'
    """
    base = Path(root) if root is not None else default_data_root()
    if base is not None:
        path = base / filename
        if not path.is_file():
            raise FileNotFoundError(f"dataset file not found: '{path}'. {_DATA_HINT}")
        return str(path), path.read_bytes()
    if filename not in SHIPPED_DATASETS:
        raise ConfigError(
            f"filename must be one of the shipped dataset files {sorted(SHIPPED_DATASETS)} "
            f"when no root is given (got {filename!r})"
        )
    packaged, expected = SHIPPED_DATASETS[filename]
    res = resources.files("bnn").joinpath(_PACKAGE_DATA_DIR, packaged)
    source = str(res)
    try:
        raw = res.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(
            f"shipped dataset file missing: '{source}' is not in the installed package; "
            f"reinstall qsgd, or point data.root / $QSGD_DATA_ROOT at a folder holding {filename}"
        ) from None
    if packaged.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"shipped dataset file '{source}' must be gzip data ({exc}); reinstall qsgd"
            ) from None
    got = hashlib.sha256(raw).hexdigest()
    if got != expected:
        raise DataError(
            f"shipped dataset file '{source}' is corrupt: the sha256 of its uncompressed bytes "
            f"must be {expected} (got {got}); reinstall qsgd, or point data.root / "
            "$QSGD_DATA_ROOT at a good copy"
        )
    return source, raw
