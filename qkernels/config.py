"""Validated experiment configuration (pydantic v2), built once at the edge (CLI, script).

A config file is TOML with the sections below. It is validated once, at load, in pydantic's
strict mode: no value is coerced (``steps = "300"`` and ``steps = true`` are refused; an int is
accepted where a float is expected), NaN and inf are refused, unknown keys are refused, and the
settings are checked against each other (data set sizes, qubit counts, a forward-only device with
training). Every problem raises :class:`~qsgd.errors.ConfigError` with one line per config that
names the dotted path, what was expected and the value: ``training.steps: must be a valid
integer (got '300' of type string)``.

Example:
    >>> cfg = ExperimentConfig.from_file("examples/configs/kernels_checkerboard.toml")
    >>> cfg.seeds
    [0, 1, 2, 3, 4]
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from qkernels.ansatz import ANSATZE
from qkernels.datasets import DATASETS, check_dataset_args, dataset_features
from qkernels.device import DEVICES
from qkernels.training import OPTIMIZERS
from qsgd.configio import ErrorWording, FileWording, read_config_file
from qsgd.configio import format_validation_error as _format
from qsgd.distributed import DaskConfig
from qsgd.errors import ConfigError

__all__ = [
    "DatasetConfig",
    "AnsatzConfig",
    "KernelConfig",
    "TrainingConfig",
    "ModelConfig",
    "BaselinesConfig",
    "ExperimentConfig",
    "MAX_WIRES",
    "format_validation_error",
]

#: Most qubits a statevector kernel is simulated with here (``ansatze.*.n_wires``).
MAX_WIRES = 20

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class _Strict(BaseModel):
    """Base of every section: unknown keys refused, no coercion, no NaN/inf, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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

    @model_validator(mode="after")
    def _sizes(self) -> DatasetConfig:
        check_dataset_args(
            self.name,
            n_train=self.n_train,
            n_test=self.n_test,
            n_features=self.n_features,
            noise=self.noise,
        )
        return self

    @property
    def features(self) -> int:
        """Feature count of the loaded data (2 for generated sets, ``n_features`` or 4 else)."""
        return dataset_features(self.name, self.n_features)


class AnsatzConfig(_Strict):
    """One ansatz: ``name`` in ``ANSATZE``, ``n_wires`` (default: feature count), ``n_layers``."""

    name: str
    n_wires: int | None = Field(None, ge=1, le=MAX_WIRES)
    n_layers: int = Field(2, ge=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _known(v, ANSATZE, "ansatz")

    @property
    def trainable(self) -> bool:
        """Whether the ansatz has trainable parameters (its registry shape is not empty)."""
        shape_of = ANSATZE[self.name][1]
        return math.prod(shape_of(self.n_wires or 1, self.n_layers)) > 0


class KernelConfig(_Strict):
    """Kernel settings shared by all runs.

    ``scheduler`` says where evaluation Gram matrices are computed (``"local"``, ``"processes"``
    or a Dask address, see :mod:`qkernels.distributed`); the ``[kernel.dask]`` table
    (:class:`qsgd.distributed.DaskConfig`) holds the Dask ``scheduler_file``, timeouts, TLS
    files and ``chunk_size`` (rows per Gram tile).
    """

    device: str = "default.qubit"
    bandwidth: float = Field(1.0, gt=0.0)
    trainable_bandwidth: bool = False
    memory_budget_bytes: int = Field(2**30, gt=0)
    scheduler: str = "local"
    dask: DaskConfig = DaskConfig()

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str) -> str:
        from qsgd.distributed import check_scheduler

        return check_scheduler(v)

    @model_validator(mode="after")
    def _one_cluster(self) -> KernelConfig:
        from qsgd.distributed import check_target

        check_target(self.scheduler, self.dask.scheduler_file)  # not both
        return self

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


class BaselinesConfig(_Strict):
    """The comparisons every run makes next to the trained kernel, on the same splits.

    Attributes:
        bandwidth_search: also score the untrained circuit at the bandwidth chosen by
            cross-validation on the training split.
        bandwidth_min, bandwidth_max: the log-spaced bandwidth grid's ends.
        bandwidth_candidates: grid size; ``None`` gives the training's budget in simulated
            states, ``max(4, round(steps * batch_size / n_train))`` (each candidate simulates
            the ``n_train`` training states once; training simulates ``batch_size`` per step).
        rbf: also score an RBF-kernel SVM whose ``gamma`` is chosen by cross-validation over
            ``rbf_candidates`` log-spaced multiples (1e-2 to 1e2) of ``1 / (d · Var X)``.
        cv_folds: stratified folds of both searches (fewer when a class is smaller).
        reg: regulariser of the ridge-based evaluators (model complexity, bound, geometric
            difference to the tuned RBF kernel).
    """

    bandwidth_search: bool = True
    bandwidth_min: float = Field(0.05, gt=0.0)
    bandwidth_max: float = Field(4.0, gt=0.0)
    bandwidth_candidates: int | None = Field(None, ge=2, le=200)
    rbf: bool = True
    rbf_candidates: int = Field(17, ge=2, le=200)
    cv_folds: int = Field(5, ge=2)
    reg: float = Field(1e-3, gt=0.0)

    @model_validator(mode="after")
    def _range(self) -> BaselinesConfig:
        if not self.bandwidth_min < self.bandwidth_max:
            raise ValueError(
                "bandwidth_min must be below bandwidth_max "
                f"(got {self.bandwidth_min} and {self.bandwidth_max})"
            )
        return self


class ExperimentConfig(_Strict):
    """A whole experiment: data sets x ansätze x seeds.

    Attributes:
        name: experiment name (used in reports and as the default output folder
            ``runs/kernels/<name>``): letters, digits, ``_``, ``-`` and ``.``.
        seeds: one run per seed per (data set, ansatz).
        datasets, ansatze: the grid.
        kernel, training, model: shared settings.
        baselines: the untrained, tuned-bandwidth and tuned-RBF comparisons of every run.
        plots: write Gram heatmaps, alignment curves and decision boundaries.
        plot_seeds: plot the first seed of each group only, or all.
        threads: torch CPU threads (1 is fastest for the small tensors of <= 10 qubits).
    """

    name: str = "experiment"
    seeds: list[Annotated[int, Field(ge=0, le=2**32 - 1)]] = Field(
        default_factory=lambda: [0], min_length=1
    )
    datasets: list[DatasetConfig] = Field(min_length=1)
    ansatze: list[AnsatzConfig] = Field(min_length=1)
    kernel: KernelConfig = KernelConfig()
    training: TrainingConfig = TrainingConfig()
    model: ModelConfig = ModelConfig()
    baselines: BaselinesConfig = BaselinesConfig()
    plots: bool = True
    plot_seeds: Literal["first", "all"] = "first"
    threads: int = Field(1, ge=1)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v) or v in (".", ".."):
            raise ValueError(
                "must be a folder name of letters, digits, '_', '-' and '.' (it names the "
                f"default output folder runs/kernels/<name>) (got {v!r})"
            )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        for j, a in enumerate(self.ansatze):
            for i, d in enumerate(self.datasets):
                features = d.features
                if a.n_wires is not None and a.n_wires < features:
                    raise ValueError(
                        f"ansatze.{j}.n_wires: must be >= the {features} features of "
                        f"datasets.{i} ({d.name!r}) (got {a.n_wires})"
                    )
                if a.n_wires is None and features > MAX_WIRES:
                    raise ValueError(
                        f"ansatze.{j}.n_wires: unset, so it is the feature count of datasets.{i} "
                        f"({d.name!r}), which must be <= {MAX_WIRES} qubits here; lower "
                        f"datasets.{i}.n_features (got {features})"
                    )
        if DEVICES[self.kernel.device] is None and self.training.steps > 0:
            trained = [a.name for a in self.ansatze if a.trainable]
            if trained or self.kernel.trainable_bandwidth:
                what = (
                    f"trainable ansatz {trained[0]!r}" if trained else "trainable_bandwidth = true"
                )
                raise ValueError(
                    f"kernel.device: {self.kernel.device!r} computes Gram matrices forward only "
                    "(no gradients), so it cannot train the kernel; use device = "
                    "'default.qubit' to train, or set training.steps = 0 "
                    f"(got training.steps = {self.training.steps} with {what})"
                )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> ExperimentConfig:
        """Validate a dictionary (as read from TOML).

        Args:
            data: The nested tables.
            source: Where ``data`` came from (a file name), for the message.

        Raises:
            ConfigError: one line naming each bad key's dotted path, what was expected and the
                value (``training.steps: must be a valid integer (got '300' of type string)``).
        """
        if not isinstance(data, dict):
            raise ConfigError(
                f"an experiment config must be a table of keys (got {type(data).__name__})"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            where = f" {source!r}" if source else ""
            raise ConfigError(
                f"invalid experiment config{where}: {format_validation_error(exc)}"
            ) from None

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentConfig:
        """Read and validate a TOML file.

        Raises:
            ConfigError: missing or unreadable file, a folder, invalid TOML (with line and
                column) or invalid values (see :meth:`from_dict`).
        """
        p = Path(path)
        data = read_config_file(p, wording=_FILE_WORDING, yaml=False)
        return cls.from_dict(data, source=str(p))

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
        data["baselines"]["bandwidth_candidates"] = 3
        data["baselines"]["rbf_candidates"] = 3
        data["baselines"]["cv_folds"] = 2
        return ExperimentConfig.from_dict(data)


_FILE_WORDING = FileWording(
    missing="config file {path} does not exist",
    not_a_file="config path {path} is not a file (a TOML file is expected)",
    unreadable="cannot read config file {path}: {detail}",
    invalid="config file {path} is not valid {fmt}: {detail}",
)
_EXPECTED = {
    "model_type": "a table",
    "dict_type": "a table",
    "list_type": "an array",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean (true or false)",
    "string_type": "a string",
}
_WORDING = ErrorWording(
    {
        "extra_forbidden": "{at}unknown key (known keys here: {keys}){got}",
        "missing": "{at}required key is missing",
        **{
            kind: f"{{at}}must be {what} (got {{value}} of type {{type}})"
            for kind, what in _EXPECTED.items()
        },
        "value_error": "{at}{msg}{got}",
        "should": "{path}: must be {must}{got}",
        "*": "{path}: {msg}{got}",
    },
    top="config",
    sort_keys=True,
    shorten=80,
)


def format_validation_error(exc: ValidationError) -> str:
    """One line for a pydantic error: ``path: must be ... (got value)`` per problem, joined by ``;``."""
    return _format(exc, ExperimentConfig, _WORDING)
