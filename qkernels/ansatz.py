"""Embedding ansätze: feature maps ``U(x; params)`` applied to a register of wires.

Every ansatz is a callable ``(x, params, wires)`` that queues PennyLane gates. ``x`` has shape
``(n_features,)`` or ``(batch, n_features)``: gates read ``x[..., i]`` so one circuit evaluates a
whole batch through PennyLane parameter broadcasting. Trainable parameters are never broadcast.

Built-in ansätze (pick by name with :func:`get_ansatz`):

* ``"angle"``: one ``RY(x_i)`` per wire, no trainable parameters.
* ``"iqp"``: the IQP / ZZ feature map of Havlíček et al. 2019, ``reps`` repetitions of
  ``H``, ``RZ(x_i)`` and ``ZZ((π - x_i)(π - x_j))`` on neighbouring wires; no trainable parameters.
* ``"hubregtsen"``: the layered trainable embedding of Hubregtsen et al. 2021, exactly as in
  their PennyLane demo: per layer ``H``, ``RZ(x_k)``, trainable ``RY`` on each wire and a ring of
  trainable ``CRZ``; wire ``k`` of layer ``j`` reads feature ``(j·n_wires + k) mod n_features``.
* ``"hardware_efficient"``: data re-uploading ``RY(x_i)``, trainable ``RZ``/``RY`` and a ring of
  ``CNOT`` per layer.

Features are assigned to wires cyclically (wire ``w`` reads feature ``w % n_features``), so a 2-D
data set can be embedded on 5 wires as in Hubregtsen et al. The ``"hubregtsen"`` ansatz shifts that
assignment by ``n_wires`` in every layer, as the published circuit does; the two agree only when
``n_wires`` is a multiple of ``n_features``.

Example:
    >>> ansatz = get_ansatz("hubregtsen", n_wires=3, n_layers=2)
    >>> ansatz.param_shape
    (2, 2, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pennylane as qml

from qsgd.errors import ConfigError, UnknownBackendError

__all__ = [
    "Ansatz",
    "ANSATZE",
    "get_ansatz",
    "from_callable",
    "angle_embedding",
    "iqp_embedding",
    "hubregtsen_embedding",
    "hardware_efficient_embedding",
]

GateFn = Callable[[Any, Any, Sequence[int]], None]


def _ring(wires: Sequence[int]) -> list[tuple[int, int]]:
    """Neighbouring pairs on a ring; one pair for 2 wires, none for 1."""
    n = len(wires)
    if n < 2:
        return []
    if n == 2:
        return [(wires[0], wires[1])]
    return [(wires[i], wires[(i + 1) % n]) for i in range(n)]


def _feature(x: Any, wire_index: int) -> Any:
    return x[..., wire_index % x.shape[-1]]


def angle_embedding(x: Any, params: Any, wires: Sequence[int]) -> None:
    """``RY(x_i)`` on wire ``i``. ``params`` is ignored (shape ``(0,)``)."""
    for i, w in enumerate(wires):
        qml.RY(_feature(x, i), wires=w)


def iqp_embedding(x: Any, params: Any, wires: Sequence[int], reps: int = 2) -> None:
    """ZZ feature map: ``reps`` x (H, RZ(x_i), IsingZZ((π - x_i)(π - x_j)) on ring neighbours)."""
    for _ in range(reps):
        for i, w in enumerate(wires):
            qml.Hadamard(wires=w)
            qml.RZ(_feature(x, i), wires=w)
        index = {w: i for i, w in enumerate(wires)}
        for a, b in _ring(list(wires)):
            angle = (np.pi - _feature(x, index[a])) * (np.pi - _feature(x, index[b]))
            qml.IsingZZ(angle, wires=[a, b])


def hubregtsen_embedding(x: Any, params: Any, wires: Sequence[int]) -> None:
    """Layered embedding of Hubregtsen et al. 2021; ``params`` has shape ``(n_layers, 2, n_wires)``.

    Per layer ``l``: ``H`` and ``RZ(x[(l·n_wires + i) mod n_features])`` on wire ``i``, then
    ``RY(params[l, 0, i])``, then ``CRZ(params[l, 1, k])`` along the ring. The feature index runs
    on across layers (the demo's ``i0 = l·len(wires)``), so with 5 wires and 2 features layer 0
    reads ``x0 x1 x0 x1 x0`` and layer 1 reads ``x1 x0 x1 x0 x1``.
    """
    pairs = _ring(list(wires))
    n = len(wires)
    for layer in range(params.shape[0]):
        for i, w in enumerate(wires):
            qml.Hadamard(wires=w)
            qml.RZ(_feature(x, layer * n + i), wires=w)
            qml.RY(params[layer, 0, i], wires=w)
        for k, (a, b) in enumerate(pairs):
            qml.CRZ(params[layer, 1, k], wires=[a, b])


def hardware_efficient_embedding(x: Any, params: Any, wires: Sequence[int]) -> None:
    """Data re-uploading ansatz; ``params`` has shape ``(n_layers, 2, n_wires)``.

    Per layer: ``RY(x_i)``, ``RZ(params[l, 0, i])``, ``RY(params[l, 1, i])``, then a CNOT ring.
    """
    pairs = _ring(list(wires))
    for layer in range(params.shape[0]):
        for i, w in enumerate(wires):
            qml.RY(_feature(x, i), wires=w)
            qml.RZ(params[layer, 0, i], wires=w)
            qml.RY(params[layer, 1, i], wires=w)
        for a, b in pairs:
            qml.CNOT(wires=[a, b])


@dataclass(frozen=True)
class Ansatz:
    """An embedding circuit with its declared shapes.

    Attributes:
        name: registry name or a user label.
        n_wires: number of qubits.
        n_features: number of input features the ansatz reads (``x.shape[-1]`` must equal it).
        param_shape: shape of the trainable parameter array; ``(0,)`` when there is none.
        fn: the gate function ``(x, params, wires)``.
        init_scale: trainable parameters are initialised uniformly in ``[0, init_scale)``.

    Shape:
        - x: ``(n_features,)`` or ``(batch, n_features)``
        - params: ``param_shape``
    """

    name: str
    n_wires: int
    n_features: int
    param_shape: tuple[int, ...]
    fn: GateFn = field(repr=False)
    init_scale: float = 2 * np.pi

    def __call__(self, x: Any, params: Any, wires: Sequence[int] | None = None) -> None:
        """Queue the gates of ``U(x; params)`` on ``wires`` (default ``range(n_wires)``)."""
        self.fn(x, params, list(range(self.n_wires)) if wires is None else list(wires))

    @property
    def trainable(self) -> bool:
        """Whether the ansatz has any trainable parameter."""
        return int(np.prod(self.param_shape)) > 0

    def init_params(self, seed: int | None = 0) -> np.ndarray:
        """Seeded uniform initial parameters in ``[0, init_scale)``, shape ``param_shape``."""
        rng = np.random.default_rng(seed)
        return rng.uniform(0.0, self.init_scale, size=self.param_shape)

    def check_features(self, x: np.ndarray | Any) -> None:
        """Raise ``ValueError`` when ``x.shape[-1]`` differs from ``n_features``."""
        got = int(x.shape[-1]) if getattr(x, "ndim", 0) >= 1 else 0
        if got != self.n_features:
            raise ValueError(
                f"x must have {self.n_features} features for ansatz {self.name!r} on "
                f"{self.n_wires} wires (expected {self.n_features} features, got {got})"
            )


def _layered_shape(n_wires: int, n_layers: int) -> tuple[int, ...]:
    return (n_layers, 2, n_wires)


ANSATZE: dict[str, tuple[GateFn, Callable[[int, int], tuple[int, ...]]]] = {
    "angle": (angle_embedding, lambda n, L: (0,)),
    "iqp": (iqp_embedding, lambda n, L: (0,)),
    "hubregtsen": (hubregtsen_embedding, _layered_shape),
    "hardware_efficient": (hardware_efficient_embedding, _layered_shape),
}
"""Registry: name -> (gate function, ``(n_wires, n_layers) -> param_shape``)."""


def get_ansatz(name: str, n_wires: int, n_layers: int = 2, n_features: int | None = None) -> Ansatz:
    """Build a registered ansatz by name.

    Args:
        name: one of ``ANSATZE``.
        n_wires: number of qubits (>= 1).
        n_layers: layers of the trainable ansätze; repetitions of ``"iqp"``.
        n_features: features read cyclically by the wires; defaults to ``n_wires``.

    Raises:
        UnknownBackendError: unknown name (the message lists the known ones).
        ConfigError: non-positive ``n_wires``, ``n_layers`` or ``n_features``.
    """
    if name not in ANSATZE:
        raise UnknownBackendError(
            f"unknown ansatz {name!r}; known ansätze: {', '.join(sorted(ANSATZE))}"
        )
    for label, value in (("n_wires", n_wires), ("n_layers", n_layers)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{label} must be a positive int (got {value!r})")
    n_features = n_wires if n_features is None else n_features
    if (
        not isinstance(n_features, int | np.integer)
        or isinstance(n_features, bool)
        or not 1 <= n_features <= n_wires
    ):
        raise ConfigError(
            f"n_features must be an int in [1, n_wires={n_wires}] (got {n_features!r})"
        )
    fn, shape_of = ANSATZE[name]
    if name == "iqp":
        reps = int(n_layers)

        def fn(x: Any, params: Any, wires: Sequence[int], _reps: int = reps) -> None:
            iqp_embedding(x, params, wires, reps=_reps)

    return Ansatz(name, int(n_wires), int(n_features), shape_of(int(n_wires), int(n_layers)), fn)


def from_callable(
    fn: GateFn,
    n_wires: int,
    param_shape: Sequence[int] = (0,),
    n_features: int | None = None,
    name: str = "custom",
    init_scale: float = 2 * np.pi,
) -> Ansatz:
    """Wrap a user gate function ``fn(x, params, wires)``.

    ``fn`` must read features as ``x[..., i]`` so that batches broadcast.

    Example:
        >>> def my_map(x, params, wires):
        ...     for i, w in enumerate(wires):
        ...         qml.RX(params[i] * x[..., i], wires=w)
        >>> ansatz = from_callable(my_map, n_wires=2, param_shape=(2,))
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable (x, params, wires) (got {type(fn).__name__})")
    n_features = n_wires if n_features is None else n_features
    return Ansatz(
        name, int(n_wires), int(n_features), tuple(int(s) for s in param_shape), fn, init_scale
    )
