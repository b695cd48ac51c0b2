"""Binary classification data sets, generated or packaged with scikit-learn (all offline, seeded).

Every loader returns a :class:`Dataset` with labels in ``{-1, +1}`` and features scaled to
``[-1, 1]`` (scaler fitted on the training split). Real data sets are standardised and reduced by
PCA to ``n_features`` components (the qubit count).

Generated: ``checkerboard`` (4x4 board, as in Hubregtsen et al. 2021), ``double_cake``
(alternating sectors on two rings), ``moons``, ``circles``. Packaged: ``iris`` (two classes),
``breast_cancer``, ``digits`` (0 vs 1).

Example:
    >>> ds = load_dataset("checkerboard", n_train=40, n_test=40, seed=0)
    >>> ds.X_train.shape, sorted(set(ds.y_train.tolist()))
    ((40, 2), [-1, 1])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import datasets as skd
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from qsgd.errors import ConfigError, ProblemError, UnknownBackendError

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "check_dataset_args",
    "dataset_features",
    "check_finite",
]


@dataclass(frozen=True)
class Dataset:
    """A train/test split.

    Shape:
        - X_train: ``(n_train, d)``, y_train: ``(n_train,)`` in ``{-1, +1}``
        - X_test: ``(n_test, d)``, y_test: ``(n_test,)``
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        """Feature count ``d``."""
        return int(self.X_train.shape[1])


def _checkerboard(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    X = rng.uniform(0.0, 1.0, size=(n, 2))
    cells = np.floor(X * 4).astype(int)
    y = np.where(cells.sum(1) % 2 == 0, 1, -1)
    return X + noise * rng.normal(size=X.shape), y


def _double_cake(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    sectors = 3
    angle = rng.uniform(0.0, 2 * np.pi, size=n)
    outer = rng.integers(0, 2, size=n)
    radius = np.where(outer == 1, rng.uniform(0.7, 1.0, n), rng.uniform(0.2, 0.5, n))
    sector = np.floor(angle / (2 * np.pi / (2 * sectors))).astype(int)
    y = np.where((sector + outer) % 2 == 0, 1, -1)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return X + noise * rng.normal(size=X.shape), y


def _moons(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    X, y = skd.make_moons(n_samples=n, noise=noise or 0.1, random_state=int(rng.integers(2**31)))
    return X, np.where(y == 1, 1, -1)


def _circles(n: int, rng: np.random.Generator, noise: float) -> tuple[np.ndarray, np.ndarray]:
    X, y = skd.make_circles(
        n_samples=n, noise=noise or 0.05, factor=0.5, random_state=int(rng.integers(2**31))
    )
    return X, np.where(y == 1, 1, -1)


def _iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = skd.load_iris(return_X_y=True)
    keep = y < 2  # setosa vs versicolor
    return X[keep], np.where(y[keep] == 1, 1, -1)


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = skd.load_breast_cancer(return_X_y=True)
    return X, np.where(y == 1, 1, -1)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = skd.load_digits(n_class=2, return_X_y=True)
    return X, np.where(y == 1, 1, -1)


GENERATED: dict[str, Callable[[int, np.random.Generator, float], tuple[np.ndarray, np.ndarray]]] = {
    "checkerboard": _checkerboard,
    "double_cake": _double_cake,
    "moons": _moons,
    "circles": _circles,
}
PACKAGED: dict[str, Callable[[], tuple[np.ndarray, np.ndarray]]] = {
    "iris": _iris,
    "breast_cancer": _breast_cancer,
    "digits": _digits,
}
DATASETS = tuple(sorted({**GENERATED, **PACKAGED}))
"""Known data set names."""


def _packaged_shape(name: str) -> tuple[int, int]:
    """``(samples, features)`` of a packaged data set (loaded once, then cached)."""
    if name not in _PACKAGED_SHAPES:
        X, _ = PACKAGED[name]()
        _PACKAGED_SHAPES[name] = (int(X.shape[0]), int(X.shape[1]))
    return _PACKAGED_SHAPES[name]


_PACKAGED_SHAPES: dict[str, tuple[int, int]] = {}


def dataset_features(name: str, n_features: int | None = None) -> int:
    """Feature count of :func:`load_dataset`'s output for these arguments (2 for generated sets).

    Raises:
        UnknownBackendError: unknown name.
    """
    if name not in DATASETS:
        raise UnknownBackendError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        )
    if name in GENERATED:
        return 2
    return 4 if n_features is None else int(n_features)


def check_dataset_args(
    name: str,
    *,
    n_train: int = 40,
    n_test: int = 40,
    n_features: int | None = None,
    noise: float = 0.0,
) -> None:
    """Check the arguments of :func:`load_dataset` without generating or loading any data.

    Raises:
        UnknownBackendError: unknown name (lists the known ones).
        ConfigError: sizes, feature count or noise out of range for this data set; the message
            names the argument, the allowed range and the value.
    """
    dataset_features(name)  # the name
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ConfigError(f"{label} must be an int >= 2 (got {value!r})")
    if (
        not isinstance(noise, int | float)
        or isinstance(noise, bool)
        or not math.isfinite(noise)
        or noise < 0
    ):
        raise ConfigError(f"noise must be a finite float >= 0 (got {noise!r})")
    if name in GENERATED:
        if n_features not in (None, 2):
            raise ConfigError(
                f"n_features must be 2 for generated dataset {name!r} (got {n_features!r})"
            )
        return
    n_samples, dims = _packaged_shape(name)
    if n_features is not None and (
        not isinstance(n_features, int)
        or isinstance(n_features, bool)
        or not 1 <= n_features <= dims
    ):
        raise ConfigError(
            f"n_features must be an int in [1, {dims}] for {name!r} (got {n_features!r})"
        )
    if n_train + n_test > n_samples:
        raise ConfigError(
            f"n_train + n_test must be <= {n_samples} for {name!r} (got {n_train + n_test})"
        )


def check_finite(X: np.ndarray, what: str) -> None:
    """Raise :class:`~qsgd.errors.ProblemError` naming ``what`` and the first rows with NaN/inf.

    Shape:
        - X: ``(N, d)``
    """
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        rows = [int(r) for r in np.flatnonzero(~finite)]
        shown = ", ".join(map(str, rows[:5])) + (
            f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        )
        raise ProblemError(
            f"{what} must be finite (got NaN or inf in row{'s' * (len(rows) > 1)} {shown})"
        )


def load_dataset(
    name: str,
    *,
    n_train: int = 40,
    n_test: int = 40,
    n_features: int | None = None,
    seed: int | None = 0,
    noise: float = 0.0,
) -> Dataset:
    """Load or generate a data set, split it and scale features to ``[-1, 1]``.

    Args:
        name: one of ``DATASETS``.
        n_train: training points (generated sets; packaged sets are subsampled to it).
        n_test: test points.
        n_features: PCA components for packaged sets (default 4); generated sets are 2-D and
            reject any other value.
        seed: seed of generation, subsampling and split.
        noise: Gaussian noise on generated points (moons/circles use 0.1/0.05 when 0); finite, >= 0.

    Raises:
        UnknownBackendError: unknown name (lists known ones). ConfigError: bad sizes or noise.
        ProblemError: the features hold NaN or inf (the message names the data set, the split
            and the rows), e.g. from a noise level so large that the points overflow; or the
            training split holds a single class (tiny generated sets).
    """
    check_dataset_args(name, n_train=n_train, n_test=n_test, n_features=n_features, noise=noise)
    rng = np.random.default_rng(seed)
    if name in GENERATED:
        with np.errstate(over="ignore", invalid="ignore"):
            X, y = GENERATED[name](n_train + n_test, rng, noise)
        check_finite(X, f"dataset {name!r} (generated with noise={noise!r})")
        X_tr, X_te, y_tr, y_te = X[:n_train], X[n_train:], y[:n_train], y[n_train:]
    else:
        n_features = 4 if n_features is None else n_features
        X, y = PACKAGED[name]()
        check_finite(X, f"dataset {name!r}")
        X_tr, X_te, y_tr, y_te = train_test_split(
            X,
            y,
            train_size=n_train,
            test_size=n_test,
            stratify=y,
            random_state=int(rng.integers(2**31)),
        )
        std = StandardScaler().fit(X_tr)
        pca = PCA(n_components=n_features, random_state=0).fit(std.transform(X_tr))
        X_tr, X_te = pca.transform(std.transform(X_tr)), pca.transform(std.transform(X_te))
    if len(np.unique(y_tr)) < 2:
        raise ProblemError(
            f"dataset {name!r} with seed {seed!r}: the {n_train} training points hold one class "
            "only, so no kernel can be aligned or classifier fitted; raise n_train or change "
            f"the seed (got classes {sorted({int(v) for v in y_tr})})"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        scaler = MinMaxScaler(feature_range=(-1.0, 1.0)).fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    check_finite(X_tr, f"dataset {name!r}: scaled X_train")
    check_finite(X_te, f"dataset {name!r}: scaled X_test")
    return Dataset(
        name,
        X_tr,
        np.asarray(y_tr, dtype=np.int64),
        X_te,
        np.asarray(y_te, dtype=np.int64),
    )
