"""Atomic, code-free checkpoints: round trip, crash mid-write, corrupt files, RNG states."""
# ruff: noqa: NPY002  (the checkpoint captures the legacy global numpy RNG on purpose)

from __future__ import annotations

import os
import random
import re

import numpy as np
import pytest
import torch

from bnn import checkpoint as ckpt
from bnn.checkpoint import (
    CHECKPOINT_NAME,
    PREVIOUS_NAME,
    CheckpointError,
    atomic_write_bytes,
    capture_rng_state,
    from_safe,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    to_safe,
)


def sample_state(value: float = 1.0) -> dict:
    return {
        "epoch": 2,
        "model": {"w": torch.full((2, 3), value)},
        "arrays": {"key": np.arange(5, dtype=np.uint32), "f": np.linspace(0, 1, 3)},
        "history": [{"loss": 0.5, "name": "x", "none": None}],
        "pair": (1, "a"),
        "big": 2**100,
        "scalar": np.float64(0.25),
    }


def test_round_trip_restores_numpy_arrays_and_values(tmp_path):
    path = save_checkpoint(tmp_path, sample_state())
    assert path == tmp_path / CHECKPOINT_NAME
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 2 and state["big"] == 2**100 and state["scalar"] == 0.25
    assert torch.equal(state["model"]["w"], torch.ones(2, 3))
    key = state["arrays"]["key"]
    assert isinstance(key, np.ndarray) and key.dtype == np.uint32
    np.testing.assert_array_equal(key, np.arange(5))
    np.testing.assert_array_equal(state["arrays"]["f"], np.linspace(0, 1, 3))
    assert state["history"] == [{"loss": 0.5, "name": "x", "none": None}]
    assert state["pair"] == (1, "a")


def test_file_loads_with_weights_only(tmp_path):
    save_checkpoint(tmp_path, sample_state())
    raw = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert raw["format_version"] == ckpt.FORMAT_VERSION


def test_unstorable_value_names_its_path_and_writes_nothing(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"state\['opt'\]\['cache'\] cannot be stored.*object"
    ):
        save_checkpoint(tmp_path, {"opt": {"cache": object()}})
    assert os.listdir(tmp_path) == []


def test_second_save_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, sample_state(1.0))
    save_checkpoint(tmp_path, sample_state(2.0))
    assert float(load_checkpoint(tmp_path)["model"]["w"][0, 0]) == 2.0
    assert float(load_checkpoint(tmp_path / PREVIOUS_NAME)["model"]["w"][0, 0]) == 1.0


@pytest.mark.parametrize("fail_in", ["write", "fsync", "rename"])
def test_crash_mid_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch, fail_in):
    save_checkpoint(tmp_path, sample_state(1.0))
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if fail_in == "write":
        real_save = torch.save

        def half_save(obj, f, *a, **k):  # the serialiser dies half-way
            real_save(obj, f, *a, **k)
            raise OSError("simulated crash")

        monkeypatch.setattr(ckpt.torch, "save", half_save)
    elif fail_in == "fsync":
        monkeypatch.setattr(ckpt.os, "fsync", boom)
    else:
        real_replace = os.replace

        def replace(src, dst):  # the final rename never happens
            if str(dst).endswith(CHECKPOINT_NAME) and ".tmp" in str(src):
                boom()
            real_replace(src, dst)

        monkeypatch.setattr(ckpt.os, "replace", replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, sample_state(2.0))
    monkeypatch.undo()
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    if fail_in == "rename":  # old one already rotated: it is complete as the previous one
        assert (tmp_path / PREVIOUS_NAME).read_bytes() == before
    else:
        assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
        assert float(load_checkpoint(tmp_path)["model"]["w"][0, 0]) == 1.0


def test_truncated_checkpoint_gives_a_clear_error_and_names_the_previous(tmp_path):
    save_checkpoint(tmp_path, sample_state(1.0))
    save_checkpoint(tmp_path, sample_state(2.0))
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(
        CheckpointError,
        match=r"is corrupt or not a qsgd checkpoint: a truncated zip archive \(100 bytes; got "
        r"RuntimeError: .*\); the previous checkpoint .*prev\.pt.* is kept",
    ):
        load_checkpoint(tmp_path)
    assert float(load_checkpoint(tmp_path / PREVIOUS_NAME)["model"]["w"][0, 0]) == 1.0


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at '.*checkpoint\.pt'"):
        load_checkpoint(tmp_path)
    torch.save({"hello": 1}, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(
        CheckpointError, match=r"is not a qsgd checkpoint of format 1 \(got format_version None\)"
    ):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT_NAME).unlink()
    (tmp_path / CHECKPOINT_NAME).mkdir()
    with pytest.raises(CheckpointError, match=r"checkpoint '.*checkpoint\.pt' is not a file"):
        load_checkpoint(tmp_path)


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (tmp_path / CHECKPOINT_NAME).write_bytes(
        pickle.dumps({"format_version": 1, "x": Evil()}, protocol=2)
    )
    with pytest.raises(CheckpointError, match="corrupt or not a qsgd checkpoint") as err:
        load_checkpoint(tmp_path)
    assert "WeightsUnpickler error: Unsupported global: GLOBAL print was not an allowed" in str(
        err.value
    )
    assert "weights_only" not in str(err.value) and "\x1b" not in str(err.value)


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", r"\(0 bytes; got EOFError: the file ends early\)"),
        (b"PK\x03\x04truncated", r": a truncated zip archive \(13 bytes; got RuntimeError: "),
        (b"\x80\x02garbage", r"\(9 bytes; got UnpicklingError: WeightsUnpickler error: "),
    ],
)
def test_corrupt_checkpoint_message_is_one_clean_line(tmp_path, content, expected):
    """No torch advice to load with weights_only=False, no escapes, no line breaks, no warnings."""
    import warnings

    (tmp_path / CHECKPOINT_NAME).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol" warning stays inside
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path)
    message = str(err.value)
    assert message.startswith(f"checkpoint {str(tmp_path / CHECKPOINT_NAME)!r} is corrupt or ")
    assert re.search(expected, message), message
    assert "weights_only" not in message and "trusted source" not in message
    assert "\n" not in message and "\x1b" not in message and "http" not in message


def test_load_error_detail_strips_advice_and_escapes():
    exc = RuntimeError(
        "\x1b[31mWeights only load failed.\x1b[0m Re-running `torch.load` with `weights_only` "
        "set to `False` will likely succeed. Do it only if you got the file from a trusted "
        "source.\n\nTrying to load unsupported GLOBAL os.system\n\nCheck the documentation "
        "of torch.load at https://pytorch.org/docs."
    )
    assert ckpt._load_error_detail(exc) == "Trying to load unsupported GLOBAL os.system"


def test_atomic_files_get_the_umask_mode_not_mkstemp_0600(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_bytes(tmp_path / "a.txt", b"x")
    save_checkpoint(tmp_path, sample_state())
    for name in ("a.txt", CHECKPOINT_NAME):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_atomic_write_bytes_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    gen = torch.Generator().manual_seed(5)
    save_checkpoint(tmp_path, {"rng": capture_rng_state(gen)})
    first = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen))
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    gen2 = torch.Generator().manual_seed(0)
    restore_rng_state(load_checkpoint(tmp_path)["rng"], gen2)
    again = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(2, generator=gen2))
    assert torch.equal(first[0], again[0]) and torch.equal(first[3], again[3])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2]


def test_to_safe_from_safe_are_inverse():
    obj = {"a": [np.int32(3), (np.ones(2, dtype=np.int16), "s")]}
    back = from_safe(to_safe(obj))
    assert back["a"][0] == 3 and isinstance(back["a"][0], int)
    assert back["a"][1][0].dtype == np.int16 and back["a"][1][1] == "s"
