"""Two CPU processes (gloo) launched by torchrun or accelerate, as a user launches them: both ranks train their shard,
the INC masks agree, rank 0 alone writes the run, and the result is a one-process run's with the same
effective batch. A two-process run stopped mid-training resumes from its epoch checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import linear_weights, tiny_recipe

from pofa_openvino import PofaError, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def no_dropout_bert(tiny_bert, tmp_path_factory) -> Path:
    """The tiny BERT without dropout, so two processes and one can be compared number for number."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    out = tmp_path_factory.mktemp("no-dropout-bert")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(out)
    return out


def recipe(model_dir: Path, epochs: int = 3, **training) -> dict:
    """128 examples; 8 per process and step, so 16 per optimizer step with two processes."""
    spec = tiny_recipe(model_dir, pruning={"pattern": "1x1", "pruning_scope": "local", "target_sparsity": 0.5,
                                           "start_step": 2, "end_step": 10, "pruning_frequency": 2})
    spec["data"]["max_train_samples"] = 128
    spec["training"] = {"num_train_epochs": epochs, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                        "logging_steps": 4, **training}
    return spec


LAUNCHERS = {
    "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
    # --multi_gpu is accelerate's torchrun-style launcher; with no GPU here the ranks train on the CPU (gloo).
    "accelerate": [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                   "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
}


def launch(spec: dict, tmp_path: Path, out: Path, *extra: str, launcher: str = "torchrun",
           **popen) -> subprocess.Popen:
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*LAUNCHERS[launcher], "-m", "pofa_openvino.cli", "run", str(path), "-o", str(out), *extra]
    return subprocess.Popen(command, cwd=tmp_path, env=env, **popen)


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_two_processes_train_like_one_with_the_same_effective_batch(launcher, no_dropout_bert, tmp_path):
    launched = launch(recipe(no_dropout_bert), tmp_path, tmp_path / "ddp", launcher=launcher,
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = launched.communicate(timeout=300)
    assert launched.returncode == 0, output
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    training = report["training"]
    assert training["processes"] == 2 and training["effective_batch_size"] == 16 and training["steps"] == 24
    assert [r["rank"] for r in training["ranks"]] == [0, 1]
    assert all(r["examples"] == 24 * 8 and r["steps"] == 24 for r in training["ranks"])  # both ranks trained
    assert training["masks_identical"] is True
    assert len({r["zero_pattern_sha256"] for r in training["ranks"]}) == 1
    assert report["sparsity"]["overall"] == pytest.approx(0.5, abs=0.01)
    # One run directory, written once: nothing else appeared beside it, and rank 1 logged no results.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "tiny.yaml"]
    assert output.count("tiny: results") == 1

    single = run(recipe(no_dropout_bert, gradient_accumulation_steps=2), output_dir=tmp_path / "single")
    assert single.report["training"]["effective_batch_size"] == 16 and single.report["training"]["steps"] == 24
    assert single.report["training"]["processes"] == 1
    expected, got = linear_weights(single.run_dir / "checkpoint"), linear_weights(tmp_path / "ddp" / "checkpoint")
    for name in expected:
        assert float((expected[name] - got[name]).abs().max()) < 1e-4, name
        assert float(((expected[name] == 0) == (got[name] == 0)).float().mean()) > 0.999, name
    assert report["accuracy"]["torch_fp32"] == single.report["accuracy"]["torch_fp32"]
    losses = [e["loss"] for e in report["training"]["history"]]
    assert losses == pytest.approx([e["loss"] for e in single.report["training"]["history"]], abs=1e-4)


def test_a_stopped_two_process_run_resumes_from_its_epoch_checkpoint(no_dropout_bert, tmp_path):
    spec, out = recipe(no_dropout_bert, epochs=40), tmp_path / "run"
    launched = launch(spec, tmp_path, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "train-state" / "trainer_state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and launched.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    launched.send_signal(signal.SIGTERM)  # what a scheduler does: torchrun stops both ranks where they are
    launched.wait(timeout=60)
    assert state.is_file() and json.loads(state.read_text())["processes"] == 2
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at < 320 and not (out / "checkpoint").exists()

    with pytest.raises(PofaError, match="written by 2 training processes and this run has 1"):
        run(tmp_path / "tiny.yaml", output_dir=out, resume=True)

    resumed = launch(spec, tmp_path, out, "--resume", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    training = json.loads((out / "report.json").read_text())["training"]
    assert training["resumed_from_step"] >= killed_at and training["steps"] == 320
    assert training["masks_identical"] is True and not (out / "train-state").exists()


def test_device_and_mixed_precision_are_chosen_and_reported(tiny_bert, tmp_path):
    import torch

    training = {"max_steps": 4, "per_device_train_batch_size": 16, "learning_rate": 1e-3}
    auto = run(tiny_recipe(tiny_bert, training=training), output_dir=tmp_path / "auto").report["training"]
    gpu = torch.cuda.is_available()
    assert auto["device"] == ("cuda" if gpu else "cpu")
    assert auto["mixed_precision"] == ("bf16" if gpu and torch.cuda.is_bf16_supported() else "no")
    bf16 = run(tiny_recipe(tiny_bert, training={**training, "device": "cpu", "mixed_precision": "bf16"}),
               output_dir=tmp_path / "bf16").report["training"]
    assert (bf16["device"], bf16["mixed_precision"]) == ("cpu", "bf16") and bf16["final_loss"] > 0
    if not gpu:
        with pytest.raises(PofaError, match="training.device is cuda, but torch sees no CUDA device"):
            run(tiny_recipe(tiny_bert, training={**training, "device": "cuda"}), output_dir=tmp_path / "cuda")
