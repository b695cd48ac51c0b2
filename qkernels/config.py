"""Validated experiment configuration (pydantic v2), built once at the edge (CLI, script).

A config file is TOML with the sections below; unknown keys and bad values are rejected with
their dotted path, the value and what was expected (:class:`~qsgd.errors.ConfigError`).

Example:
    >>> cfg = ExperimentConfig.from_file("examples/configs/kernels_checkerboard.toml")
    >>> cfg.seeds
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qkernels.ansatz import ANSATZE
from qkernels.datasets import DATASETS
from qkernels.device import DEVICES
from qkernels.training import OPTIMIZERS
from qsgd.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DatasetConfig",
    "AnsatzConfig",
    "KernelConfig",
    "TrainingConfig",
    "ModelConfig",
    "ExperimentConfig",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known(value: str, known: Any, what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; known: {', '.join(sorted(known))}")
    return value


class DatasetConfig(_Strict):
    """One data set: ``name`` in ``qkernels.datasets.DATASETS``, sizes, PCA features, noise."""

    name: str
    n_train: int = Field(40, ge=2)
    n_test: int = Field(40, ge=2)
    n_features: int | None = Field(None, ge=1)
    noise: float = Field(0.0, ge=0.0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _known(v, DATASETS, "dataset")


class AnsatzConfig(_Strict):
    """One ansatz: ``name`` in ``ANSATZE``, ``n_wires`` (default: feature count), ``n_layers``."""

    name: str
    n_wires: int | None = Field(None, ge=1, le=20)
    n_layers: int = Field(2, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _known(v, ANSATZE, "ansatz")


class KernelConfig(_Strict):
    """Kernel settings shared by all runs."""

    device: str = "default.qubit"
    bandwidth: float = Field(1.0, gt=0.0)
    trainable_bandwidth: bool = False
    memory_budget_bytes: int = Field(2**30, gt=0)
    scheduler: str = "local"

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        from qsgd.distributed import check_scheduler

        return check_scheduler(v)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return _known(v, DEVICES, "device")


class TrainingConfig(_Strict):
    """Alignment training: ``steps`` (0 skips training), batch size, learning rate, objective."""

    steps: int = Field(100, ge=0)
    batch_size: int = Field(8, ge=2)
    lr: float = Field(0.05, gt=0.0)
    centered: bool = False
    optimizer: str = "adam"
    eval_every: int = Field(0, ge=0)

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        return _known(v, OPTIMIZERS, "optimizer")


class ModelConfig(_Strict):
    """The SVM on the precomputed kernel."""

    C: float = Field(1.0, gt=0.0)


class ExperimentConfig(_Strict):
    """A whole experiment: data sets x ansätze x seeds.

    Attributes:
        name: experiment name (used in reports).
        seeds: one run per seed per (data set, ansatz).
        datasets, ansatze: the grid.
        kernel, training, model: shared settings.
        plots: write Gram heatmaps, alignment curves and decision boundaries.
        plot_seeds: plot the first seed of each group only, or all.
        threads: torch CPU threads (1 is fastest for the small tensors of <= 10 qubits).
    """

    name: str = "experiment"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    datasets: list[DatasetConfig] = Field(min_length=1)
    ansatze: list[AnsatzConfig] = Field(min_length=1)
    kernel: KernelConfig = KernelConfig()
    training: TrainingConfig = TrainingConfig()
    model: ModelConfig = ModelConfig()
    plots: bool = True
    plot_seeds: Literal["first", "all"] = "first"
    threads: int = Field(1, ge=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Validate a dictionary; raise :class:`ConfigError` naming path, value and expectation."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                path = ".".join(str(p) for p in err["loc"]) or "<root>"
                value = err.get("input")
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key (not part of the schema)"
                lines.append(f"{path}: {msg} (got {value!r})")
            raise ConfigError("invalid experiment config:\n  " + "\n  ".join(lines)) from None

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentConfig:
        """Read and validate a TOML file."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    def smoke_version(self) -> ExperimentConfig:
        """A reduced copy for CI: one seed, 12 train/test points, 3 training steps, no PCA change."""
        data = self.model_dump()
        data["seeds"] = data["seeds"][:1]
        for d in data["datasets"]:
            d["n_train"], d["n_test"] = 12, 12
        for a in data["ansatze"]:
            a["n_layers"] = min(a["n_layers"], 2)
        data["training"]["steps"] = min(data["training"]["steps"], 3)
        data["training"]["batch_size"] = 4
        data["training"]["eval_every"] = 0
        return ExperimentConfig.from_dict(data)
