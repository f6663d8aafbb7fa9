"""The training loop on callbacks: events fire in the loop's order, an observer changes nothing,
INC pruning reaches its target and the zero-mask lock keeps every zero, gradient accumulation is a
bigger batch, Ctrl-C closes the progress without ending training, and a run stopped mid-epoch resumes
into the uninterrupted run's weights and history."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import pytest
import torch

from pofa_openvino.callbacks import TrainerCallback, TrainState
from pofa_openvino.recipe import PruningSection, TrainingSection
from pofa_openvino.train import train_loop

GENERATOR = torch.Generator()
EVENTS = ("on_train_begin", "on_step_begin", "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end",
          "on_epoch_end", "on_train_end")


@dataclass
class Regression:
    """A toy objective: 16 points of a fixed linear map, mean squared error (no dropout, no HF)."""

    teacher: None = None
    inputs: torch.Tensor = field(default_factory=lambda: torch.randn(16, 32, generator=GENERATOR.manual_seed(3)))

    def train_items(self) -> list[int]:
        return list(range(len(self.inputs)))

    def collate(self, items: list[int]) -> dict[str, torch.Tensor]:
        x = self.inputs[items]
        return {"x": x, "y": x.flip(-1)[:, :4]}

    def loss(self, model, batch):
        return torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])

    def evaluate(self, model) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": round(float(self.loss(model, self.collate(self.train_items()))), 6)}


def _model() -> torch.nn.Module:
    """Two hidden Linear layers INC prunes, and a last one it leaves dense (it takes it for the head)."""
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 4))


def _training(**settings) -> TrainingSection:
    return TrainingSection(**{"max_steps": 5, "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                              "device": "cpu", **settings})


class Recorder(TrainerCallback):
    """Every event with the step the state shows at it."""

    def __init__(self):
        self.seen: list[tuple[str, int]] = []
        for event in EVENTS:
            setattr(self, event, partial(self._saw, event))

    def _saw(self, event: str, state: TrainState) -> None:
        self.seen.append((event, state.step))


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_events_fire_in_the_loops_order_and_see_the_step_counted_at_its_end():
    recorder = Recorder()
    train_loop(_model(), None, Regression(), _training(), extra_callbacks=[recorder])
    step = ["on_step_begin", "on_before_optimizer_step", "on_after_optimizer_step", "on_step_end"]
    expected = [("on_train_begin", 0)]
    for done in range(5):  # 16 items in batches of 4: an epoch is 4 steps
        expected += [(event, done + (event == "on_step_end")) for event in step]
        if done + 1 in (4, 5):
            expected.append(("on_epoch_end", done + 1))
    assert recorder.seen == expected + [("on_train_end", 5)]


def test_an_observing_callback_changes_nothing():
    plain, observed = _model(), _model()
    first = train_loop(plain, None, Regression(), _training(max_steps=6))
    second = train_loop(observed, None, Regression(), _training(max_steps=6), extra_callbacks=[Recorder()])
    assert first.history == second.history and first.final_loss == second.final_loss
    assert all(torch.equal(a, b) for a, b in zip(_weights(plain).values(), _weights(observed).values(), strict=True))


def test_accumulating_two_micro_batches_is_one_batch_of_twice_the_size():
    whole, accumulated = _model(), _model()
    train_loop(whole, None, Regression(), _training(per_device_train_batch_size=8))
    train_loop(accumulated, None, Regression(), _training(gradient_accumulation_steps=2))
    for name, weight in _weights(whole).items():
        assert torch.allclose(weight, _weights(accumulated)[name], atol=1e-6), name


def test_pruning_reaches_its_target_and_holds_the_rate_until_it_ends():
    from pofa_openvino.prune import inc_config

    model, rates = _model(), []

    class Rates(TrainerCallback):
        def on_step_end(self, state: TrainState) -> None:
            rates.append(state.learning_rate)

    section = PruningSection(pattern="unstructured", pruning_type="magnitude", target_sparsity=0.75, start_step=0,
                             end_step=4, excluded_op_names=[], pruning_scope="local")
    train_loop(model, None, Regression(), _training(max_steps=8, lr_scheduler_type="linear_after_pruning"),
               inc_config(section), extra_callbacks=[Rates()])
    for layer in (model[0], model[2]):
        assert float((layer.weight == 0).float().mean()) == pytest.approx(0.75, abs=0.01)
    assert (model[4].weight != 0).all()
    assert [r / 1e-2 for r in rates] == pytest.approx([1.0] * 4 + [0.75, 0.5, 0.25, 0.0])


def test_the_zero_mask_lock_keeps_every_zero_while_the_rest_trains():
    from pofa_openvino.prune import inc_config

    model = _model()
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight[torch.rand(layer.weight.shape, generator=GENERATOR.manual_seed(2)) < 0.8] = 0.0
    before = _weights(model)
    train_loop(model, None, Regression(), _training(max_steps=6, learning_rate=5e-2),
               inc_config(PruningSection(pruning_type="pattern_lock", excluded_op_names=[])))
    for name in ("0.weight", "2.weight"):
        zeros, after = before[name] == 0, model.state_dict()[name]
        assert (after[zeros] == 0).all() and (after[~zeros] != before[name][~zeros]).float().mean() > 0.9, name


def test_ctrl_c_closes_the_progress_and_ends_no_training():
    class Stop(TrainerCallback):
        def on_step_begin(self, state: TrainState) -> None:
            if state.step == 2:
                raise KeyboardInterrupt

    class Closed(Recorder):
        def close(self) -> None:
            self.seen.append(("close", -1))

    closed = Closed()
    with pytest.raises(KeyboardInterrupt):
        train_loop(_model(), None, Regression(), _training(), extra_callbacks=[Stop(), closed])
    assert closed.seen[-2:] == [("on_step_end", 2), ("close", -1)]
    assert "on_train_end" not in dict(closed.seen)


def test_a_checkpoint_records_the_persisted_state_and_older_ones_still_load():
    state = TrainState(max_steps=9, processes=2)
    state.finish_step(0.5, 1e-3)
    state.finish_epoch({"accuracy": 0.75})
    state.finish_step(0.25, 1e-3)
    state.seconds = 3.5
    assert state.to_json() == {"step": 2, "epoch": 1, "epoch_step": 1, "loss": 0.25, "processes": 2, "seconds": 3.5,
                               "history": [{"epoch": 1, "step": 1, "loss": 0.5, "accuracy": 0.75}]}
    older = TrainState(max_steps=9)
    older.load_json({"step": 4, "epoch": 2, "loss": 0.1, "history": [], "fingerprint": "f"})
    assert (older.step, older.epoch, older.epoch_step, older.processes, older.seconds) == (4, 2, 0, 1, 0.0)


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_resumes_into_the_uninterrupted_run(tiny_bert, tmp_path):
    """Accumulation 2, INC pruning, a checkpoint every 3 steps and at each epoch's end: stopped at step 7,
    the run resumes from step 6 (two steps into epoch 2) and ends where the straight run ends."""
    from pofa_openvino.data import load_task_data
    from pofa_openvino.modeling import load_model, load_tokenizer
    from pofa_openvino.prune import inc_config
    from pofa_openvino.recipe import DataSection
    from pofa_openvino.train import TaskObjective, seed_everything

    data = load_task_data("text-classification", DataSection(dataset="builtin:sentiment", max_train_samples=64,
                                                             max_eval_samples=16))
    tokenizer = load_tokenizer(str(tiny_bert))
    training = _training(max_steps=-1, num_train_epochs=3, per_device_train_batch_size=8, gradient_accumulation_steps=2,
                         save_steps=3, learning_rate=1e-3, lr_scheduler_type="linear_after_pruning")
    pruning = PruningSection(pattern="1x1", pruning_type="magnitude", target_sparsity=0.5, start_step=0, end_step=6,
                             pruning_frequency=2, pruning_scope="local")

    def run(start, checkpoint_dir, *extra):
        seed_everything(0)
        model = load_model(str(start), "text-classification", data.labels)
        objective = TaskObjective(data, tokenizer, 32, 16)
        result = train_loop(model, tokenizer, objective, training, inc_config(pruning), checkpoint_dir, "f",
                            extra_callbacks=list(extra))
        return model, result

    class Stop(TrainerCallback):
        def on_step_begin(self, state: TrainState) -> None:
            if state.step == 7:
                raise KeyboardInterrupt

    straight, expected = run(tiny_bert, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        run(tiny_bert, tmp_path / "stopped", Stop())
    resumed, got = run(tmp_path / "stopped", tmp_path / "stopped")
    assert (got.resumed_from_step, got.steps, expected.steps) == (6, 12, 12)
    assert got.history == expected.history and got.final_loss == expected.final_loss
    assert all(torch.equal(a, b) for a, b in zip(_weights(straight).values(), _weights(resumed).values(), strict=True))
