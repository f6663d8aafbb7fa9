"""A scriptable command line: ``--json`` documents that ``json.loads`` reads (nothing else on stdout,
no NaN), tables that keep identifiers whole when piped, and the exit codes in ``--help`` as the README
states them. The verbs that need a run or a bundle (run, bench, verify) are tested in test_package.py
on its packaged run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pofa_openvino.cli import main
from pofa_openvino.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
CLI = [sys.executable, "-m", "pofa_openvino.cli"]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_models_json_lists_every_checkpoint_with_its_published_results(capsys):
    assert main(["models", "--json"]) == 0
    listed = _json(capsys)
    assert listed["ok"] and [m["hub_id"] for m in listed["models"]] == list(MODELS)
    bert90 = {m["hub_id"]: m for m in listed["models"]}["Intel/bert-base-uncased-sparse-90-unstructured-pruneofa"]
    assert bert90["sparsity"] == 0.9 and bert90["published"]["squad"] == {"exact_match": 0.7983, "f1": 0.8725}


@pytest.mark.parametrize("columns", [None, "40"])
def test_models_piped_keeps_each_hub_id_on_one_line(columns):
    """Not a terminal (a pipe), whatever COLUMNS says: `pofa-openvino models | grep ID` finds the id."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    done = subprocess.run(CLI + ["models"], capture_output=True, text=True, env=env, check=True)
    lines = done.stdout.splitlines()
    for hub_id in MODELS:
        assert any(hub_id in line for line in lines), hub_id


def test_recipes_json_lists_valid_and_broken_recipes(tmp_path, capsys):
    assert main(["recipes", str(RECIPES), "--json"]) == 0
    listed = {entry["file"]: entry for entry in _json(capsys)["recipes"]}
    sst2 = listed["bert-base-90-sst2.yaml"]
    assert sst2["task"] == "text-classification" and sst2["dataset"] == "glue/sst2" and sst2["error"] is None
    assert sst2["expected"]["accuracy"] == MODELS["Intel/bert-base-uncased-sparse-90-unstructured-pruneofa"] \
        .published["sst2"]["accuracy"]
    # A prune-once recipe (no task): its target sparsity. Written here: the shipped one reads ../shared/data.
    (tmp_path / "text.txt").write_text("some unlabeled text\n")
    (tmp_path / "once.yaml").write_text("name: once\nmodel: {name_or_path: offline:all-MiniLM-L6-v2}\n"
                                        "pretrain: {text_files: [text.txt], pruning: {target_sparsity: 0.85}}\n")
    (tmp_path / "broken.yaml").write_text("name: broken\nmodel: {name_or_path: ./nowhere}\n")
    assert main(["recipes", str(tmp_path), "--json"]) == 0  # one bad recipe is listed as such
    broken, once = _json(capsys)["recipes"]
    assert broken["file"] == "broken.yaml" and broken["error"].startswith(str(tmp_path / "broken.yaml"))
    assert once["task"] is None and once["prune_once_sparsity"] == 0.85 and once["error"] is None


def test_validate_json_answers_for_every_file_and_exits_2_on_a_bad_one(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((RECIPES / "quickstart.yaml").read_text().replace("learning_rate: 1.0e-4", "learning_rate: fast"))
    assert main(["validate", str(RECIPES / "quickstart.yaml"), str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    good, wrong = result["recipes"]
    assert not result["ok"] and result["exit_code"] == 2
    assert good["ok"] and good["name"] == "quickstart" and good["stages"][-1] == "package"
    assert not wrong["ok"] and wrong["exit_code"] == 2 and "training.learning_rate" in wrong["error"]
    assert "training.learning_rate" in captured.err  # the one line a person reads is still on stderr
    assert main(["validate", str(RECIPES / "quickstart.yaml"), "--json"]) == 0
    assert _json(capsys)["ok"]


def test_a_failing_verb_prints_a_json_error_with_its_exit_code(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nowhere"), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": False, "error": f"{tmp_path / 'nowhere'}: no such bundle directory "
                                                            "or archive", "exit_code": 1}
    assert captured.err.startswith("error: ")


def test_json_is_strict_and_stdout_carries_it_alone():
    """NaN and infinities become null; whatever else writes to stdout meanwhile (Python or native code,
    file descriptor 1) lands on stderr."""
    probe = ("import os\nfrom pofa_openvino.cli import _print_json, _stdout_to_stderr\n"
             "with _stdout_to_stderr():\n    print('noise')\n    os.write(1, b'native noise\\n')\n"
             "_print_json({'ok': True, 'nan': float('nan'), 'inf': [float('inf'), 1.5]})\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"ok": True, "nan": None, "inf": [None, 1.5]}
    assert "noise" in done.stderr and "native noise" in done.stderr


def test_help_lists_the_exit_codes_the_readme_states(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    epilog = capsys.readouterr().out.split("exit codes:")[1]
    codes = re.findall(r"^\s+(\d+)\s", epilog, re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    stated = readme[readme.index("Exit codes:"):readme.index("`--debug` shows the")].replace("\n", " ")
    assert codes == ["0", "1", "2", "130", "141"] == re.findall(r"[:;] (\d+) ", stated)
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    assert "130  interrupted" in capsys.readouterr().out  # every verb's help too
