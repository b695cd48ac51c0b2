"""The Trainer yields one record per step and per epoch; fit is the Trainer plus callbacks."""

from __future__ import annotations

from bnn.baselines import make_optimizer
from bnn.callbacks import Callback
from bnn.data import get_dataset
from bnn.models import BinaryMLP
from bnn.records import strip_timings
from bnn.trainer import Trainer
from bnn.training import fit, seed_everything


def _setup(seed: int = 0):
    ds = get_dataset("digits", classes=(1, 7))
    seed_everything(seed)
    model = BinaryMLP(ds.num_features, [8], ds.num_classes)
    return ds, model, make_optimizer("signsgd", model, lr=0.01)


def test_records_come_in_the_documented_order():
    ds, model, opt = _setup()
    trainer = Trainer(model, opt, ds, epochs=2, batch_size=64, max_batches_per_epoch=3)
    kinds = [r["kind"] for r in trainer.run()]
    per_epoch = ["epoch_start", "step", "step", "step", "epoch", "checkpoint"]
    assert kinds == per_epoch * 2
    assert trainer.status == "completed" and trainer.state.step == 6
    assert [r["epoch"] for r in trainer.state.history] == [1, 2]
    assert "val_accuracy" in trainer.state.history[-1]


def test_state_dict_midway_continues_exactly_like_one_run():
    ds, model, opt = _setup()
    full = Trainer(model, opt, ds, epochs=3, batch_size=64, max_batches_per_epoch=4)
    reference = [strip_timings(r) for r in full.run() if r["kind"] in ("step", "epoch")]

    ds, model, opt = _setup()
    first = Trainer(model, opt, ds, epochs=3, batch_size=64, max_batches_per_epoch=4)
    records, saved = [], None
    for r in first.run():
        if r["kind"] in ("step", "epoch"):
            records.append(strip_timings(r))
        if r["kind"] == "step" and r["step"] == 6:  # stop mid-epoch 2, like a signal would
            first.state.epoch, first.state.batch = 1, 2
            saved = first.state_dict()
            break
    ds, model, opt = _setup(seed=99)  # a different init: everything must come from the state
    second = Trainer(model, opt, ds, epochs=3, batch_size=64, max_batches_per_epoch=4)
    second.load_state_dict(saved)
    records += [strip_timings(r) for r in second.run() if r["kind"] in ("step", "epoch")]
    assert records == reference


def test_fit_feeds_callback_objects_every_record_and_plain_functions_steps_and_epochs():
    seen_objects: list[str] = []
    seen_functions: list[str] = []

    class Spy(Callback):
        def on_start(self, trainer):
            seen_objects.append("start")

        def on_record(self, trainer, record):
            seen_objects.append(record["kind"])

        def on_end(self, trainer, summary):
            seen_objects.append("end")
            summary["spy"] = True

    ds, model, opt = _setup()
    summary = fit(
        model,
        opt,
        ds,
        epochs=1,
        batch_size=64,
        max_batches_per_epoch=2,
        progress=False,
        callbacks=[Spy(), lambda kind, record: seen_functions.append(kind)],
    )
    assert seen_objects == ["start", "epoch_start", "step", "step", "epoch", "checkpoint", "end"]
    assert seen_functions == ["step", "step", "epoch"]
    assert summary["spy"] is True and summary["status"] == "completed"


def test_flip_ratio_of_a_step_record_is_the_fraction_of_changed_signs():
    ds, model, opt = _setup()
    trainer = Trainer(model, opt, ds, epochs=1, batch_size=64, max_batches_per_epoch=1)
    layers = dict(trainer.layers)
    before = {n: (layer.weight.detach() >= 0).clone() for n, layer in layers.items()}
    step = next(r for r in trainer.run() if r["kind"] == "step")
    for n, layer in layers.items():
        changed = int((before[n] != (layer.weight.detach() >= 0)).sum())
        assert step["flip_ratio"][n] == changed / layer.weight.numel()
