"""Every malformed recipe gives one line naming file:line: key, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import yaml

from pofa_openvino.cli import main

GOOD = """\
name: demo
model:
  name_or_path: offline:all-MiniLM-L6-v2
data:
  dataset: builtin:sentiment
training:
  max_steps: 5
pruning:
  pattern: 4x1
  target_sparsity: 0.9
"""
NO_TRAINING = GOOD.split("training:")[0]

CASES = {
    "bad pattern": (GOOD.replace("pattern: 4x1", "pattern: x4"), 9, "pruning.pattern",
                    "'x4' is not a pattern; use unstructured, NxM (4x1, 1x4), N:M (2:4)"),
    "unknown key suggests": (GOOD.replace("target_sparsity", "target_sparsty"), 10,
                             "pruning.target_sparsty", "did you mean 'target_sparsity'?"),
    "unknown section": (GOOD + "quantisation:\n  approach: static\n", 11, "quantisation",
                        "did you mean 'quantization'?"),
    "wrong type": (GOOD.replace("max_steps: 5", "max_steps: five"), 7, "training.max_steps",
                   "'five': input should be a valid integer"),
    "out of range": (GOOD.replace("target_sparsity: 0.9", "target_sparsity: 1.5"), 10,
                     "pruning.target_sparsity", "less than 1"),
    "bad choice": (GOOD + "quantization:\n  approach: dynamic\n", 12, "quantization.approach",
                   "'dynamic' is not allowed; use static, weight_only, qat or none"),
    "missing key": (GOOD.replace("  name_or_path: offline:all-MiniLM-L6-v2\n", "  revision: main\n"), 2,
                    "model.name_or_path", "required key is missing"),
    "bad yaml": (GOOD.replace("  max_steps: 5", "  max_steps: [5"), 8, "", "not valid YAML"),
    "duplicate key": (GOOD + "training:\n  max_steps: 2\n", 11, "training", "duplicate key"),
    "missing file": (GOOD.replace("  dataset: builtin:sentiment",
                                  "  train_file: nowhere.tsv\n  validation_file: nowhere.tsv"), 5,
                     "data.train_file", "file not found"),
    "missing model dir": (GOOD.replace("offline:all-MiniLM-L6-v2", "./no-such-model"), 3,
                          "model.name_or_path", "no Hugging Face model directory"),
    "unknown offline model": (GOOD.replace("all-MiniLM-L6-v2", "tiny"), 3, "model.name_or_path",
                              "use offline:all-MiniLM-L6-v2"),
    "python tag refused": (GOOD.replace("name: demo", "name: !!python/object/apply:os.system [ls]"), 1, "",
                           "not valid YAML"),
    "not a mapping": ("- a\n- b\n", 1, "", "a recipe is a mapping"),
    "bad rate": (GOOD + "export:\n  sparse_weights_decompression_rate: 0.3\n", 12,
                 "export.sparse_weights_decompression_rate", "use auto, off, or a rate in [0.5, 1.0]"),
    "teacher budget without auto": (GOOD + "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n"
                                    "  teacher_training:\n    max_steps: 3\n", 13, "distillation.teacher_training",
                                    "teacher_training is the budget of the teacher this run fine-tunes"),
    "union typo": (GOOD + "export:\n  sparse_weights_decompression_rate: Auto\n", 12,
                   "export.sparse_weights_decompression_rate", "'Auto' is not allowed; use auto or off"),
    "union list": (GOOD + "export:\n  sparse_weights_decompression_rate: [auto]\n", 12,
                   "export.sparse_weights_decompression_rate", "['auto'] is not allowed"),
    "a directory as a data file": (GOOD.replace("  dataset: builtin:sentiment",
                                                "  train_file: .\n  validation_file: ."), 5, "data.train_file",
                                   "is a directory; give the file itself"),
    "negative max_gap": (GOOD + "report:\n  max_gap: -1\n", 12, "report.max_gap", "greater than or equal to 0"),
    "steps reversed": (GOOD + "  start_step: 10\n  end_step: 2\n", 12, "pruning.end_step",
                       "end_step (2) is before start_step (10)"),
    "start after the default end": (GOOD + "  start_step: 10\n", 11, "pruning.start_step",
                                    "end_step (0) is before start_step (10)"),
    "group steps reversed": (GOOD + "  end_step: 20\n  pruning_configs:\n    - op_names: [a]\n"
                             "    - op_names: [b]\n      start_step: 5\n      end_step: 3\n", 16,
                             "pruning.pruning_configs[1].end_step", "end_step (3) is before start_step (5)"),
    "group starts after the section ends": (GOOD + "  end_step: 20\n  pruning_configs:\n    - op_names: [a]\n"
                                            "      start_step: 30\n", 14, "pruning.pruning_configs[0].start_step",
                                            "end_step (20) is before start_step (30)"),
    "pattern_lock with a schedule": (GOOD + "  pruning_type: pattern_lock\n  start_step: 1\n  end_step: 4\n", 13,
                                     "pruning.end_step", "set end_step equal to start_step (got 1 and 4)"),
    "prune once steps reversed": (GOOD.split("data:")[0] + "pretrain:\n  text_files: [recipe.yaml]\n  pruning:\n"
                                  "    start_step: 9\n    end_step: 1\n", 8, "pretrain.pruning.end_step",
                                  "end_step (1) is before start_step (9)"),
    "lr schedule typo": (GOOD.replace("max_steps: 5", "max_steps: 5\n  lr_scheduler_type: cos"), 8,
                         "training.lr_scheduler_type", "'cos' is not allowed; use linear, constant, "
                         "constant_with_warmup, cosine or linear_after_pruning"),
    "constant with warmup": (GOOD.replace("max_steps: 5", "max_steps: 5\n  lr_scheduler_type: constant\n"
                                          "  warmup_steps: 10"), 8, "training.lr_scheduler_type",
                             "constant has no warmup (as in Hugging Face): use constant_with_warmup"),
    "rate held while nothing prunes": (GOOD.split("pruning:")[0] + "  lr_scheduler_type: linear_after_pruning\n", 8,
                                       "training.lr_scheduler_type", "this recipe has no `pruning` section"),
    "qat budget held while pruning": (GOOD + "quantization:\n  approach: qat\n  training:\n"
                                      "    lr_scheduler_type: linear_after_pruning\n", 14,
                                      "quantization.training.lr_scheduler_type", "prunes nothing"),
    "qat budget without qat": (GOOD + "quantization:\n  training:\n    max_steps: 3\n", 12, "quantization.training",
                               "it needs `approach: qat` (approach static does not train)"),
    "negative warmup steps": (GOOD.replace("max_steps: 5", "max_steps: 5\n  warmup_steps: -1"), 8,
                              "training.warmup_steps", "greater than or equal to 0"),
    "adam beta of 1": (GOOD.replace("max_steps: 5", "max_steps: 5\n  adam_beta2: 1.0"), 8, "training.adam_beta2",
                       "less than 1"),
    "adam epsilon of 0": (GOOD.replace("max_steps: 5", "max_steps: 5\n  adam_epsilon: 0"), 8,
                          "training.adam_epsilon", "greater than 0"),
    "decay typo": (GOOD + "  sparsity_decay_type: cubic\n", 11, "pruning.sparsity_decay_type",
                   "'cubic' is not allowed; use exp, cos, cube, linear or zhu_gupta"),
    "hidden layers by another name": (GOOD + "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n  hidden_states:\n"
                                      "    layers: first\n", 14, "distillation.hidden_states.layers",
                                      "'first' is not allowed; use last or all"),
    "hidden layer twice": (GOOD + "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n  hidden_states:\n"
                           "    layers: [2, 2]\n", 14, "distillation.hidden_states.layers",
                           "not a list of distinct layer indices"),
    "negative hidden layer": (GOOD + "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n  hidden_states:\n"
                              "    layers: [-1]\n", 14, "distillation.hidden_states.layers[0]",
                              "greater than or equal to 0"),
    "hidden weight of 0": (GOOD + "distillation:\n  teacher: offline:all-MiniLM-L6-v2\n  hidden_states:\n"
                           "    weight: 0\n", 14, "distillation.hidden_states.weight", "greater than 0"),
    # Cross-section rules: the schema holds them all, so `validate` refuses what `run` would.
    "package without an IR": (GOOD + "package:\n  target: edge\n", 11, "package",
                              "the package bundles the OpenVINO IR: add a `quantization` (or `export`) section"),
    "qat without training": (NO_TRAINING + "quantization:\n  approach: qat\n", 7, "quantization.approach",
                             "qat fine-tunes the fake-quantized model with the `training` section"),
    "qat with op overrides": (GOOD + "quantization:\n  approach: qat\n  op_type_dict:\n    Linear:\n"
                              "      weight: {dtype: [fp32]}\n", 12, "quantization.approach",
                              "op_name_dict / op_type_dict apply to post-training INT8"),
    "accuracy criterion without static": (GOOD + "quantization:\n  approach: weight_only\n  accuracy_criterion:\n"
                                          "    tolerable_loss: 0.02\n", 13, "quantization.accuracy_criterion",
                                          "accuracy_criterion applies to approach: static"),
}
CROSS_SECTION = ("package without an IR", "qat without training", "qat with op overrides",
                 "accuracy criterion without static")


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_recipe_is_one_line(case, tmp_path, capsys):
    text, line, key, message = CASES[case]
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert err.startswith(prefix), err
    assert message in err, err


@pytest.mark.parametrize("case", CROSS_SECTION)
def test_run_refuses_what_validate_refuses_with_the_same_line_before_any_stage(case, tmp_path, capsys):
    text, *_ = CASES[case]
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    refused = capsys.readouterr().err.strip()
    assert main(["run", str(path), "-o", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == refused
    assert not (tmp_path / "run").exists()


def test_a_recipe_changed_in_python_is_validated_again(tmp_path):
    from pydantic import ValidationError

    from pofa_openvino.errors import RecipeError
    from pofa_openvino.recipe import PackageSection, QuantizationSection, load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(NO_TRAINING)
    spec = load_recipe(path)
    with pytest.raises(RecipeError, match=r"recipe\.yaml: package: the package bundles the OpenVINO IR"):
        spec.model_copy(update={"package": PackageSection()})
    with pytest.raises(RecipeError, match="qat fine-tunes"):
        spec.model_copy(update={"quantization": QuantizationSection(approach="qat")})
    with pytest.raises(ValidationError, match="accuracy_criterion applies"):
        QuantizationSection().model_copy(update={"approach": "weight_only", "accuracy_criterion": {}})
    kept = spec.model_copy(update={"quantization": QuantizationSection()})
    assert kept.source == str(path) and kept.quantization.approach == "static"
    assert kept.quantization.model_fields_set == set()  # what the file left out stays "left out"


def test_good_recipe_validates(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_set_overrides_are_type_checked(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path), "--set", "training.learning_rate=3e-5",
                 "--set", "pruning.pattern=2:4"]) == 0
    capsys.readouterr()
    assert main(["validate", str(path), "--set", "training.learning_rate=fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("--set training.learning_rate=fast: training.learning_rate: 'fast'"), err


def test_override_values_reach_the_recipe(tmp_path):
    from pofa_openvino import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    overrides = ["pruning.pattern=2:4", "training.max_steps=7", "export.sparse_weights_decompression_rate=off"]
    recipe = load_recipe(path, overrides=overrides)
    assert (recipe.pruning.pattern, recipe.training.max_steps) == ("2:4", 7)
    assert recipe.export.sparse_weights_decompression_rate == "off"


def test_debug_shows_traceback_and_real_process_exits_2(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD.replace("pattern: 4x1", "pattern: x4"))
    plain = subprocess.run([sys.executable, "-m", "pofa_openvino.cli", "validate", str(path)],
                           capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip() == textwrap.dedent(f"""\
        {path}:9: pruning.pattern: 'x4' is not a pattern; use unstructured, NxM (4x1, 1x4), N:M (2:4), \
channelx1, 1xchannel or mha (attention heads)""")
    debug = subprocess.run([sys.executable, "-m", "pofa_openvino.cli", "--debug", "validate", str(path)],
                           capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


@pytest.mark.parametrize(("override", "expected"), [
    ("export.sparse_weights_decompression_rate=half", "export.sparse_weights_decompression_rate: 'half' is not"),
    ("training..seed=5", "'training..seed' has an empty part"),
    (".seed=5", "'.seed' has an empty part"),
])
def test_set_errors_in_unions_and_empty_keys_end_with_one_line(override, expected, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err == err.splitlines()[0] and err.startswith(f"--set {override}: ") and expected in err


@pytest.mark.parametrize("key", ["a.b.literal['auto','off']", "training.", "a..b", ".x", "x[0].", "[0]", "a.float"])
def test_the_line_lookup_ends_for_any_key(key):
    from pofa_openvino.recipe import _where

    assert _where(key, "r.yaml", {"a": 3}, {}) in {("r.yaml", 3), ("r.yaml", None)}


def test_a_set_key_the_file_lacks_is_blamed_on_the_set(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert main(["validate", str(path), "--set", "nothere.x=1"]) == 2
    assert capsys.readouterr().err.startswith("--set nothere.x=1: nothere: unknown key")


def test_an_empty_section_is_the_section_with_its_defaults(tmp_path):
    from pofa_openvino.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD.replace("training:\n  max_steps: 5\n", "training:\n"))
    assert load_recipe(path).training.max_steps == -1


def test_home_is_expanded_in_data_paths(tmp_path, monkeypatch):
    from pofa_openvino.recipe import load_recipe

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "t.tsv").write_text("text\tlabel\nfine\t1\n")
    path = tmp_path / "elsewhere" / "recipe.yaml"
    path.parent.mkdir()
    path.write_text(GOOD.replace("  dataset: builtin:sentiment", "  train_file: ~/t.tsv\n  validation_file: ~/t.tsv"))
    assert load_recipe(path).data.train_file == str(tmp_path / "t.tsv")


def _bomb() -> bytes:
    text = "a: &a [" + ", ".join(['"lol"'] * 9) + "]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
    return text.encode()


@pytest.mark.parametrize(("raw", "line", "expected"), [
    ("name: d\xe9mo\n".encode("latin-1"), 1, "not UTF-8 text; save the recipe as UTF-8"),
    ("name: demo\n".encode("utf-16"), 1, "UTF-16 text"),
    (b"name: demo\nmodel:\x00\n", 2, "contains NUL bytes"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), 3, "contains NUL bytes"),
    (b"a: &a [*a]\n", 1, "an alias refers to the collection it is in"),
    (_bomb(), 1, "more than 100,000 values once its aliases are expanded"),
    (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", None, "nested more than 64 levels deep"),
    (b"name: " + b"9" * 5000 + b"\n", None, "a value cannot be read: Exceeds the limit (4300 digits)"),
    (b"name: " + b"x" * (1 << 20) + b"\n", None, "a recipe is a small text file"),
])
def test_files_that_are_not_recipes_are_one_line_at_once(raw, line, expected, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(raw)
    began = time.process_time()  # CPU time: a loaded machine stretches the wall clock, not the work
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{path}:{line}: " if line else f"{path}: ") and expected in err, err
    assert time.process_time() - began < 10


MERGED = GOOD + """\
  pruning_configs:
    - &group
      op_names: [a]
      pattern: 1x4
      target_sparsity: 0.8
    - <<: *group
      op_names: [b]
    - <<: [*group, {pruning_type: magnitude}]
      <<: {target_sparsity: 0.5}
      op_names: [c]
"""


def test_merge_keys_work_as_in_pyyaml(tmp_path, capsys):
    from pofa_openvino.recipe import load_recipe
    from pofa_openvino.yaml_lines import RecipeLoader

    path = tmp_path / "recipe.yaml"
    path.write_text(MERGED)
    groups = load_recipe(path).pruning.pruning_configs
    expected = yaml.load(MERGED, Loader=RecipeLoader)["pruning"]["pruning_configs"]
    assert [g.model_dump(exclude_unset=True) for g in groups] == expected
    assert [(g.op_names, g.pattern, g.target_sparsity, g.pruning_type) for g in groups] == [
        (["a"], "1x4", 0.8, None), (["b"], "1x4", 0.8, None), (["c"], "1x4", 0.5, "magnitude")]
    assert main(["validate", str(path)]) == 0 and capsys.readouterr().out.strip() == f"{path}: ok"


@pytest.mark.parametrize(("text", "line", "key", "expected"), [
    (MERGED.replace("pattern: 1x4", "pattern: x4"), 14, "pruning.pruning_configs[0].pattern", "'x4' is not a pattern"),
    (MERGED.replace("op_names: [b]", "op_names: [b]\n      pattern: 4x4x4"), 18, "pruning.pruning_configs[1].pattern",
     "'4x4x4' is not a pattern"),
    (MERGED.replace("target_sparsity: 0.8", "target_sparsity: 1.8").replace("    - &group", "    - op_names: [z]\n"
                                                                              "    - &group"), 16,
     "pruning.pruning_configs[1].target_sparsity", "less than 1"),
    (MERGED.replace("      op_names: [c]", "      op_names: [c]\n      op_names: [d]"), 21,
     "pruning.pruning_configs[2].op_names", "duplicate key"),
    (GOOD.replace("training:\n", "training: &t\n  <<: *t\n"), 6, "training", "a merge key (<<) refers to the mapping"),
    (GOOD.replace("training:\n", "training: &t\n  x: {<<: *t}\n"), 7, "training.x.x",
     "an alias refers to the collection it is in"),
    (GOOD.replace("training:\n", "training:\n  <<: 5\n"), 7, "training", "a merge key (<<) takes a mapping or a list"),
    (GOOD.replace("training:\n", "training:\n  <<: [5]\n"), 7, "training", "takes a mapping or a list of mappings"),
])
def test_merge_key_errors_are_one_line(text, line, key, expected, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{path}:{line}: {key}: ") and expected in err, err


def test_a_merge_key_bomb_is_one_line_at_once(tmp_path, capsys):
    """Nine levels of nine merges: PyYAML 6.0.4 merges a mapping once; older ones would expand 9**9 keys,
    which the value budget stops."""
    text = "a0: &a0 {k: 1, j: 2}\n" + "".join(
        f"a{i}: &a{i}\n  <<: [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    began = time.process_time()  # CPU time: a loaded machine stretches the wall clock, not the work
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:") and "\n" not in err and time.process_time() - began < 10


@pytest.mark.parametrize(("extra", "line", "key", "expected"), [
    (("max_steps: 5", 'max_steps: "5"'), 7, "training.max_steps",
     "'5' is text (in quotes); this key takes an integer: write it without quotes"),
    (("max_steps: 5", "max_steps: 3.0"), 7, "training.max_steps", "3.0 is not a whole number; this key takes an "
                                                                 "integer (write 3 if that is meant)"),
    (("max_steps: 5", "max_steps: 2.5"), 7, "training.max_steps", "2.5 is not a whole number"),
    (("target_sparsity: 0.9", "target_sparsity: '0.9'"), 10, "pruning.target_sparsity",
     "'0.9' is text (in quotes); this key takes a number"),
    (("target_sparsity: 0.9", "target_sparsity: ninety"), 10, "pruning.target_sparsity",
     "'ninety': input should be a valid number"),
    (("pattern: 4x1", "pattern: [4x1]"), 9, "pruning.pattern", "['4x1']: input should be a valid string"),
    (("pattern: 4x1", "pattern: 4x1\n  op_names: layer.0"), 10, "pruning.op_names",
     "'layer.0' is one value; this key takes a list: write [layer.0]"),
    (("name: demo", "name: 42"), 1, "name", "42: input should be a valid string"),
    (("  name_or_path:", "  trust_remote_code: 'true'\n  name_or_path:"), 3, "model.trust_remote_code",
     "'true' is text (in quotes); this key takes true or false"),
    (("  name_or_path:", "  trust_remote_code: 'yes'\n  name_or_path:"), 3, "model.trust_remote_code",
     "'yes': input should be a valid boolean"),
    (("  name_or_path:", "  trust_remote_code: 1\n  name_or_path:"), 3, "model.trust_remote_code",
     "1: input should be a valid boolean"),
    (("max_steps: 5", "max_steps: 5\n  seed: 1.5"), 8, "training.seed", "1.5 is not a whole number"),
    (("dataset: builtin:sentiment", "dataset: builtin:sentiment\n  max_seq_length: '128'"), 6,
     "data.max_seq_length", "'128' is text (in quotes)"),
    (("dataset: builtin:sentiment", "dataset: builtin:sentiment\n  text_columns: text"), 6, "data.text_columns",
     "write [text]"),
    (("max_steps: 5", "max_steps: 5\n  warmup_steps: '5'"), 8, "training.warmup_steps",
     "'5' is text (in quotes); this key takes an integer"),
    (("max_steps: 5", "max_steps: 5\n  warmup_steps: 0.1"), 8, "training.warmup_steps",
     "0.1 is not a whole number"),
    (("max_steps: 5", "max_steps: 5\n  adam_epsilon: '1e-8'"), 8, "training.adam_epsilon",
     "'1e-8' is text (in quotes); this key takes a number"),
    (("max_steps: 5", "max_steps: 5\n  lr_scheduler_type: [cosine]"), 8, "training.lr_scheduler_type",
     "['cosine'] is not allowed"),
])
def test_types_are_strict_where_inc_and_hf_would_not_coerce(extra, line, key, expected, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD.replace(*extra, 1))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{path}:{line}: {key}: ") and expected in err, err


def test_sequence_lengths_and_set_values_are_strict_too(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD + "benchmark:\n  sequence_lengths: [32, '128']\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"{path}:12: benchmark.sequence_lengths[1]: '128' is text")
    path.write_text(GOOD)
    assert main(["validate", str(path), "--set", "training.max_steps=5.0"]) == 2
    assert capsys.readouterr().err.startswith("--set training.max_steps=5.0: training.max_steps: 5.0 is not a whole")


def test_an_integer_is_a_number_where_a_float_is_asked(tmp_path):
    from pofa_openvino.recipe import load_recipe

    path = tmp_path / "recipe.yaml"
    text = GOOD.replace("target_sparsity: 0.9", "target_sparsity: 0")
    path.write_text(text.replace("max_steps: 5", "max_steps: 5\n  learning_rate: 1"))
    recipe = load_recipe(path)
    assert recipe.pruning.target_sparsity == 0.0 and isinstance(recipe.pruning.target_sparsity, float)
    assert recipe.training.learning_rate == 1.0 and isinstance(recipe.training.learning_rate, float)
