"""Simulator devices by name: the only place in qkernels that calls ``qml.device``.

Example:
    >>> dev, diff_method = make_device("default.qubit", n_wires=4)
"""

from __future__ import annotations

import pennylane as qml

try:
    from pennylane.exceptions import DeviceError
except ImportError:  # pragma: no cover - PennyLane < 0.42 kept it at top level
    DeviceError = qml.DeviceError

from qsgd.errors import BackendUnavailableError, ConfigError, UnknownBackendError

__all__ = ["DEVICES", "make_device", "make_shot_device"]

DEVICES: dict[str, str | None] = {
    "default.qubit": "backprop",
    "lightning.qubit": None,
}
"""Known device names -> the differentiation method used for statevector QNodes.

``default.qubit`` differentiates by torch backprop through the simulation; ``lightning.qubit``
(C++ simulator, extra ``qsgd[lightning]``) computes forward Gram matrices without gradients.
"""


def make_device(
    name: str, n_wires: int, shots: int | None = None, seed: int | None = None
) -> tuple[qml.devices.Device, str | None]:
    """Create a simulator device.

    Args:
        name: one of ``DEVICES``.
        n_wires: number of qubits.
        shots: ``None`` for exact simulation; shots are set on the QNode, see ``kernel.shot_gram``.
        seed: seed of the device's sampling RNG (only used with shots).

    Returns:
        ``(device, diff_method)`` for building a statevector QNode.

    Raises:
        UnknownBackendError: the name is not in ``DEVICES`` (lists the known ones).
        BackendUnavailableError: the device's plugin is not installed.
        ConfigError: ``shots`` given for a device that only runs exactly here.
    """
    if name not in DEVICES:
        raise UnknownBackendError(
            f"unknown device {name!r}; known devices: {', '.join(sorted(DEVICES))}"
        )
    if not isinstance(n_wires, int) or isinstance(n_wires, bool) or n_wires < 1:
        raise ConfigError(f"n_wires must be a positive int (got {n_wires!r})")
    if shots is not None and name != "default.qubit":
        raise ConfigError(f"shots are only supported on 'default.qubit' (got device {name!r})")
    try:
        dev = (
            qml.device(name, wires=n_wires, seed=seed)
            if seed is not None
            else qml.device(name, wires=n_wires)
        )
    except (ImportError, DeviceError) as exc:  # pragma: no cover - plugin missing
        raise BackendUnavailableError(
            f"device {name!r} is not available ({exc}); install it with: pip install 'qsgd[lightning]'"
        ) from exc
    return dev, DEVICES[name]


def make_shot_device(name: str, n_wires: int, seed: int | None = None) -> qml.devices.Device:
    """Any installed PennyLane device by name, for finite-shot overlap circuits.

    The exact Gram always runs on ``default.qubit`` broadcasting (see ``DEVICES``); the
    shot-based path (:meth:`qkernels.kernel.EmbeddingKernel.shot_gram`) runs one overlap
    circuit per pair and works on any device that samples: ``default.qubit``,
    ``lightning.qubit``, ``default.mixed``, or a plugin device such as ``qiskit.aer``.

    Raises:
        BackendUnavailableError: no installed plugin provides ``name`` (the message says so and
            how to list the installed devices).
        ConfigError: an empty name or a bad ``n_wires``.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"shot_device must be a PennyLane device name (got {name!r})")
    if not isinstance(n_wires, int) or isinstance(n_wires, bool) or n_wires < 1:
        raise ConfigError(f"n_wires must be a positive int (got {n_wires!r})")
    try:
        if seed is None:
            return qml.device(name, wires=n_wires)
        try:
            return qml.device(name, wires=n_wires, seed=seed)
        except TypeError:  # a plugin device without a seed keyword
            return qml.device(name, wires=n_wires)
    except (ImportError, DeviceError) as exc:
        raise BackendUnavailableError(
            f"PennyLane device {name!r} is not available: install the plugin that provides it "
            "(e.g. pip install pennylane-qiskit for 'qiskit.aer'); the installed devices are "
            f"listed by qml.about() (got {type(exc).__name__}: {' '.join(str(exc).split())})"
        ) from exc
