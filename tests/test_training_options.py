"""Training options for accuracy at high sparsity: learning-rate schedules (Hugging Face's and one held
while pruning), Adam settings, the front-loaded Zhu-Gupta sparsity schedule and the back-loaded warning,
pure and hidden-state distillation, and QAT's own budget."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from conftest import tiny_recipe

from pofa_openvino.errors import RecipeError
from pofa_openvino.recipe import PruningSection, TrainingSection, load_recipe
from pofa_openvino.train import learning_rate_schedule

PEAK, STEPS = 1e-3, 100


def _rates(training: TrainingSection, steps: int = STEPS, pruning_ends: int = 0) -> list[float]:
    """The learning rate each optimizer step 1..steps uses."""
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=training.learning_rate)
    scheduler = learning_rate_schedule(optimizer, training, steps, pruning_ends)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates + [scheduler.get_last_lr()[0]]  # and after the last step


def test_the_default_schedule_is_the_linear_one_it_always_was():
    from transformers import get_linear_schedule_with_warmup

    training = TrainingSection(learning_rate=PEAK, warmup_ratio=0.15)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    before = get_linear_schedule_with_warmup(optimizer, int(0.15 * STEPS), STEPS)
    expected = [before.get_last_lr()[0]]
    for _ in range(STEPS):
        optimizer.step()
        before.step()
        expected.append(before.get_last_lr()[0])
    assert training.lr_scheduler_type == "linear" and _rates(training) == pytest.approx(expected)


@pytest.mark.parametrize(("settings", "expected"), [
    ({"lr_scheduler_type": "linear", "warmup_ratio": 0.1}, {0: 0.0, 5: 0.5, 10: 1.0, 55: 0.5, 100: 0.0}),
    ({"lr_scheduler_type": "linear", "warmup_ratio": 0.1, "warmup_steps": 20}, {10: 0.5, 20: 1.0, 60: 0.5}),
    ({"lr_scheduler_type": "constant"}, {0: 1.0, 50: 1.0, 100: 1.0}),
    ({"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 10}, {0: 0.0, 5: 0.5, 10: 1.0, 100: 1.0}),
    ({"lr_scheduler_type": "cosine", "warmup_steps": 20}, {10: 0.5, 20: 1.0, 60: 0.5, 100: 0.0}),
    ({"lr_scheduler_type": "cosine"}, {0: 1.0, 50: 0.5, 100: 0.0}),
])
def test_each_schedule_gives_hugging_faces_rate_at_chosen_steps(settings, expected):
    rates = _rates(TrainingSection(learning_rate=PEAK, **settings))
    assert {step: rates[step] / PEAK for step in expected} == pytest.approx(expected, abs=1e-9)


def test_linear_after_pruning_holds_the_peak_until_pruning_ends_then_falls_linearly_to_zero():
    rates = [r / PEAK for r in _rates(TrainingSection(learning_rate=PEAK, warmup_steps=10,
                                                      lr_scheduler_type="linear_after_pruning"), pruning_ends=60)]
    assert rates[5] == pytest.approx(0.5) and rates[10:61] == pytest.approx([1.0] * 51)  # held through step 60
    assert rates[70] == pytest.approx(0.75) and rates[80] == pytest.approx(0.5) and rates[100] == 0.0
    assert all(a > b for a, b in zip(rates[60:], rates[61:], strict=False))
    # pruning that ends within the warmup (or a pattern_lock at step 0): plain linear
    plain = _rates(TrainingSection(learning_rate=PEAK, warmup_steps=10))
    assert _rates(TrainingSection(learning_rate=PEAK, warmup_steps=10, lr_scheduler_type="linear_after_pruning"),
                  pruning_ends=0) == pytest.approx(plain)


@pytest.fixture(scope="module")
def hooked_run(tiny_bert, tmp_path_factory):
    """One short fine-tuning on the tiny BERT with INC pruning, linear_after_pruning and Adam settings,
    with the optimizer, the scheduler and every step's learning rate recorded."""
    import pofa_openvino.train as train
    from pofa_openvino.data import load_task_data
    from pofa_openvino.modeling import load_model, load_tokenizer
    from pofa_openvino.prune import inc_config
    from pofa_openvino.recipe import DataSection

    seen: dict = {"rates": []}
    schedule = train.learning_rate_schedule

    def recording(optimizer, training, steps, pruning_ends=0):
        scheduler = schedule(optimizer, training, steps, pruning_ends)
        step = scheduler.step

        def stepped():
            seen["rates"].append(scheduler.get_last_lr()[0])
            step()

        scheduler.step = stepped
        seen.update(optimizer=optimizer, steps=steps, pruning_ends=pruning_ends)
        return scheduler

    training = TrainingSection(max_steps=12, per_device_train_batch_size=8, learning_rate=PEAK, device="cpu",
                               lr_scheduler_type="linear_after_pruning", adam_beta1=0.8, adam_beta2=0.99,
                               adam_epsilon=1e-6)
    data = load_task_data("text-classification", DataSection(dataset="builtin:sentiment", max_train_samples=96,
                                                             max_eval_samples=16))
    model = load_model(str(tiny_bert), "text-classification", data.labels)
    pruning = inc_config(PruningSection(pattern="unstructured", pruning_type="magnitude", target_sparsity=0.5,
                                        start_step=0, end_step=6, sparsity_decay_type="zhu_gupta"))
    original = train.learning_rate_schedule
    train.learning_rate_schedule = recording
    try:
        train.fine_tune(model, load_tokenizer(str(tiny_bert)), data, training, 32, pruning)
    finally:
        train.learning_rate_schedule = original
    return seen


def test_the_loop_holds_the_rate_until_the_pruning_end_step_and_uses_the_adam_settings(hooked_run):
    group = hooked_run["optimizer"].param_groups[0]
    assert group["betas"] == (0.8, 0.99) and group["eps"] == 1e-6
    assert hooked_run["pruning_ends"] == 6 and hooked_run["steps"] == 12
    rates = [r / PEAK for r in hooked_run["rates"]]
    assert rates[:7] == pytest.approx([1.0] * 7) and rates[7:] == pytest.approx([5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


def _sparsity_by_step(decay: str, end_step: int = 10, steps: int = 12) -> list[float]:
    from pofa_openvino.callbacks import TrainState
    from pofa_openvino.prune import PruningCallback, inc_config

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
    section = PruningSection(pattern="unstructured", pruning_type="magnitude", target_sparsity=0.9, start_step=0,
                             end_step=end_step, sparsity_decay_type=decay, excluded_op_names=[],
                             pruning_scope="local")
    pruning, state = PruningCallback(model, inc_config(section)), TrainState(max_steps=steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    pruning.on_train_begin(state)
    sparsity = []
    while not state.done:
        pruning.on_step_begin(state)
        model(torch.randn(4, 64)).sum().backward()
        pruning.on_before_optimizer_step(state)
        optimizer.step()
        pruning.on_after_optimizer_step(state)
        optimizer.zero_grad()
        state.finish_step(0.0, 0.01)
        sparsity.append(float((model[0].weight == 0).float().mean()))
    pruning.on_train_end(state)
    return sparsity


def test_zhu_gupta_is_the_front_loaded_cubic_and_cube_stays_inc_s_back_loaded_one():
    front, back = _sparsity_by_step("zhu_gupta"), _sparsity_by_step("cube")
    for step in range(11):
        t = step / 10
        assert front[step] == pytest.approx(0.9 * (1 - (1 - t) ** 3), abs=2e-3), step
        assert back[step] == pytest.approx(0.9 * t**3, abs=2e-3), step
    assert front[5] > 0.78 and back[5] < 0.12 and front[11] == back[11] == pytest.approx(0.9, abs=2e-3)


def test_zhu_gupta_with_start_equal_to_end_prunes_at_once():
    assert _sparsity_by_step("zhu_gupta", end_step=0, steps=2)[0] == pytest.approx(0.9, abs=2e-3)


BACK_LOADED = """\
name: demo
model:
  name_or_path: offline:all-MiniLM-L6-v2
data:
  dataset: builtin:sentiment
training:
  max_steps: 1000
pruning:
  target_sparsity: 0.9
  end_step: 800
  sparsity_decay_type: cube
"""


@pytest.mark.parametrize(("text", "warned"), [
    (BACK_LOADED, ":11: pruning.sparsity_decay_type: cube is back-loaded"),
    (BACK_LOADED.replace("cube", "cos"), ":11: pruning.sparsity_decay_type: cos is back-loaded"),
    (BACK_LOADED.replace("end_step: 800", "end_step: 500"), None),  # half the run recovers
    (BACK_LOADED.replace("cube", "zhu_gupta"), None),
    (BACK_LOADED.replace("cube", "exp"), None),
    (BACK_LOADED.replace("  sparsity_decay_type: cube\n", "  pruning_configs:\n    - op_names: [a]\n"
                                                           "      sparsity_decay_type: cube\n"),
     ":13: pruning.pruning_configs[0].sparsity_decay_type: cube is back-loaded"),
    (BACK_LOADED.replace("max_steps: 1000", "num_train_epochs: 1"), None),  # the training loop says it
])
def test_validate_warns_when_a_back_loaded_shape_leaves_little_recovery(text, warned, tmp_path, caplog):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="pofa_openvino"):
        load_recipe(path)
    messages = [r.getMessage() for r in caplog.records if "back-loaded" in r.getMessage()]
    assert messages == ([f"{path}{warned} (it removes most weights just before end_step 800) and leaves 200 of "
                         "1000 steps to recover, under 50%: use zhu_gupta or exp (front-loaded), or an earlier "
                         "end_step"] if warned else []), messages


def test_the_training_loop_warns_when_only_epochs_fix_the_length(caplog):
    from pofa_openvino.callbacks import TrainState
    from pofa_openvino.prune import PruningCallback, inc_config

    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
    section = PruningSection(target_sparsity=0.9, end_step=80, sparsity_decay_type="cube", pattern="unstructured")
    with caplog.at_level(logging.WARNING, logger="pofa_openvino"):
        PruningCallback(model, inc_config(section)).on_train_begin(TrainState(max_steps=100))
        PruningCallback(model, inc_config(section)).on_train_begin(TrainState(max_steps=400))
        PruningCallback(model, inc_config(section), check_back_loaded=False).on_train_begin(TrainState(max_steps=100))
    assert [r.getMessage()[:40] for r in caplog.records] == ["pruning: cube is back-loaded (it removes"]


# Distillation ------------------------------------------------------------------------------------


def test_pure_kd_reads_no_labels():
    from pofa_openvino.train import distillation_loss

    torch.manual_seed(0)
    student, teacher = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3)
    right, wrong = torch.randint(0, 3, (8,)), torch.full((8,), 99)  # 99 is no class at all
    pure = distillation_loss(student, teacher, right, 2.0, 0.0)
    assert torch.equal(pure, distillation_loss(student, teacher, wrong, 2.0, 0.0))
    assert not torch.equal(distillation_loss(student, teacher, right, 2.0, 0.5),
                           distillation_loss(student, teacher, (right + 1) % 3, 2.0, 0.5))
    (gradient,) = torch.autograd.grad(pure, student)
    assert gradient.abs().sum() > 0


@pytest.fixture(scope="module")
def encoders(tiny_bert, tmp_path_factory):
    """A classification and a question-answering student from the tiny BERT, a teacher of each from
    another initialisation, and a batch."""
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    torch.manual_seed(1)
    models = {"cls": AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2),
              "qa": AutoModelForQuestionAnswering.from_pretrained(tiny_bert)}
    teachers = {}
    for key, model in models.items():
        teacher = type(model)(model.config)
        teachers[key] = teacher.eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[2:, 8:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0]),
             "start_positions": torch.tensor([1, 2, 3, 4]), "end_positions": torch.tensor([2, 3, 5, 6])}
    return models, teachers, batch


TASKS = {"cls": SimpleNamespace(heads=("logits",), targets=("labels",)),
         "qa": SimpleNamespace(heads=("start_logits", "end_logits"), targets=("start_positions", "end_positions"))}


def _objective(task: str, teacher, layers, weight: float = 1.0, alpha: float = 0.0):
    from pofa_openvino.recipe import DistillationSection
    from pofa_openvino.train import TaskObjective

    hidden = None if layers is None else {"layers": layers, "weight": weight}
    section = DistillationSection(teacher="t", alpha=alpha, hidden_states=hidden)
    return TaskObjective(TASKS[task], tokenizer=None, max_length=12, eval_batch_size=4, teacher=teacher,
                         distillation=section)


def _batch(task: str, batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", *TASKS[task].targets)}


@pytest.mark.parametrize("task", ["cls", "qa"])
def test_with_alpha_zero_the_hard_labels_have_no_effect(task, encoders):
    models, teachers, batch = encoders
    objective = _objective(task, teachers[task], None)
    shuffled = {k: v.flip(0) if k in TASKS[task].targets else v for k, v in _batch(task, batch).items()}
    assert torch.equal(objective.loss(models[task], _batch(task, batch)), objective.loss(models[task], shuffled))


@pytest.mark.parametrize("task", ["cls", "qa"])
@pytest.mark.parametrize("layers", ["last", "all", [0, 2]])
def test_hidden_state_distillation_adds_its_weighted_mse_and_its_gradient_reaches_the_encoder(task, layers,
                                                                                             encoders):
    from pofa_openvino.train import chosen_layers, hidden_state_mse

    models, teachers, batch = encoders
    model, teacher, batch = models[task], teachers[task], _batch(task, batch)
    logits_only = _objective(task, teacher, None).loss(model, batch)
    with_hidden = _objective(task, teacher, layers, weight=3.0).loss(model, batch)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "output_hidden_states": True}
    pairs = [chosen_layers(m(**inputs).hidden_states, layers) for m in (model, teacher)]
    assert len(pairs[0]) == (len(layers) if isinstance(layers, list) else {"last": 1, "all": 3}[layers])
    mse = hidden_state_mse(*pairs, batch["attention_mask"])
    difference, mse = float((with_hidden - logits_only).detach()), float(mse.detach())
    assert difference == pytest.approx(3.0 * mse, rel=1e-4) and mse > 0
    model.zero_grad()
    _objective(task, teacher, layers).loss(model, batch).backward()
    embeddings = model.base_model.embeddings.word_embeddings.weight.grad
    assert embeddings is not None and embeddings.abs().sum() > 0
    model.zero_grad()


def test_hidden_state_loss_falls_as_the_student_trains(encoders):
    from pofa_openvino.train import chosen_layers, hidden_state_mse

    models, teachers, batch = encoders
    model = type(models["cls"])(models["cls"].config)
    model.load_state_dict(models["cls"].state_dict())
    batch = _batch("cls", batch)
    objective = _objective("cls", teachers["cls"], "all")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "output_hidden_states": True}

    def hidden_mse() -> float:
        with torch.no_grad():
            pairs = [chosen_layers(m(**inputs).hidden_states, "all") for m in (model, teachers["cls"])]
            return float(hidden_state_mse(*pairs, batch["attention_mask"]))

    before = hidden_mse()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(15):
        objective.loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert hidden_mse() < 0.7 * before


def test_hidden_state_distillation_from_a_teacher_of_another_width_is_a_recipe_error_at_its_line(
        tiny_bert, tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from pofa_openvino import run

    config = AutoConfig.from_pretrained(tiny_bert)
    config.update({"hidden_size": 128, "num_labels": 2, "id2label": {0: "negative", 1: "positive"},
                   "label2id": {"negative": 0, "positive": 1}})
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "wide")
    recipe = tiny_recipe(tiny_bert)
    text = "\n".join([f"name: tiny\nmodel:\n  name_or_path: {tiny_bert}",
                      "data:\n  dataset: builtin:sentiment\n  max_train_samples: 32\n  max_eval_samples: 8",
                      f"training:\n  max_steps: {recipe['training']['max_steps']}",
                      f"distillation:\n  teacher: {tmp_path / 'wide'}\n  alpha: 0",
                      "  hidden_states:\n    layers: all\n"])
    (tmp_path / "recipe.yaml").write_text(text)
    with pytest.raises(RecipeError) as error:
        run(str(tmp_path / "recipe.yaml"), output_dir=tmp_path / "run")
    assert str(error.value).startswith(f"{tmp_path / 'recipe.yaml'}:13: distillation.hidden_states: the teacher "
                                       "has hidden_size 128, the model 64: hidden states are compared one to one")


def test_a_layer_index_past_either_model_is_named():
    from pofa_openvino.train import hidden_state_mismatch

    config = SimpleNamespace(hidden_size=64, num_hidden_layers=2)
    assert hidden_state_mismatch(config, config, [0, 2]) is None
    assert "layer 3 is past the last layer (2" in hidden_state_mismatch(config, config, [3])
    shallow = SimpleNamespace(hidden_size=64, num_hidden_layers=1)
    assert hidden_state_mismatch(config, shallow, "last") is None
    assert "num_hidden_layers 1, the model 2" in hidden_state_mismatch(config, shallow, "all")


# QAT's own budget --------------------------------------------------------------------------------


def test_qat_budget_defaults_to_a_short_low_rate_phase_and_inherits_the_machine_settings():
    base = {"name": "q", "model": {"name_or_path": "offline:all-MiniLM-L6-v2"},
            "data": {"dataset": "builtin:sentiment"},
            "training": {"num_train_epochs": 9, "learning_rate": 1.5e-4, "warmup_ratio": 0.1,
                         "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4, "seed": 7,
                         "lr_scheduler_type": "cosine"}}
    default = load_recipe({**base, "quantization": {"approach": "qat"}}).qat_training()
    assert (default.learning_rate, default.num_train_epochs, default.max_steps, default.warmup_ratio,
            default.lr_scheduler_type) == (1e-5, 1.0, -1, 0.0, "linear")
    assert (default.per_device_train_batch_size, default.gradient_accumulation_steps, default.seed) == (8, 4, 7)
    own = load_recipe({**base, "quantization": {"approach": "qat", "training": {
        "max_steps": 3, "learning_rate": 2e-5, "per_device_train_batch_size": 4}}}).qat_training()
    assert (own.max_steps, own.learning_rate, own.per_device_train_batch_size, own.seed) == (3, 2e-5, 4, 7)


@pytest.mark.slow
def test_qat_runs_its_own_number_of_steps(tiny_bert, tmp_path):
    from pofa_openvino import run

    recipe = tiny_recipe(tiny_bert, pruning={"pruning_type": "pattern_lock"},
                         quantization={"approach": "qat", "calibration_sampling_size": 8,
                                       "training": {"max_steps": 3, "learning_rate": 1e-5}})
    result = run(recipe, output_dir=tmp_path / "run")
    assert result.report["training"]["steps"] == 8
    assert result.report["quantization"]["training"]["steps"] == 3
    assert result.report["quantization"]["zeros_revived"] == 0


def test_an_empty_hidden_states_key_is_hidden_state_distillation_with_its_defaults(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(BACK_LOADED.replace("  sparsity_decay_type: cube\n", "") +
                    "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n  hidden_states:\n")
    hidden = load_recipe(path).distillation.hidden_states
    assert (hidden.layers, hidden.weight) == ("last", 1.0)
    path.write_text(path.read_text().replace("  hidden_states:\n", ""))
    assert load_recipe(path).distillation.hidden_states is None
