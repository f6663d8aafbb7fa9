"""`pofa-openvino serve`: a bundle behind the Open Inference Protocol, checked with a real client nobody
here wrote (tritonclient), raw HTTP for every error path, the batcher's rules, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import clean_venv, tiny_recipe
from hypothesis import given
from hypothesis import strategies as st

from pofa_openvino.runtime.batching import DynamicBatcher, Overloaded, length_groups
from pofa_openvino.runtime.oip import Limits, ProtocolError, Signature, infer_response, parse_infer

TEXTS = ["the plot was gripping .", "not good at all", "a dull , slow film", "the acting was wonderful",
         "good", "a wonderful , gripping , moving and beautifully acted film that i would see again"]
CLI = str(Path(sys.executable).with_name("pofa-openvino"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bundle_dir(tiny_bert, tmp_path_factory) -> Path:
    from pofa_openvino import run

    tmp = tmp_path_factory.mktemp("serve")
    recipe = tiny_recipe(tiny_bert, quantization={"approach": "static", "calibration_sampling_size": 16}, package={})
    return run(recipe, output_dir=tmp / "run").run_dir / "package"


class Server:
    """A `serve` process on a free loopback port, its log kept for the assertions."""

    def __init__(self, bundle: Path, log: Path, *options: str, cli: str = CLI):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process = subprocess.Popen([cli, "serve", str(bundle), "--port", str(self.port), *options],
                                        stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}: {log.read_text()}")
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready: {log.read_text()}")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict, dict[str, str]]:
        call = urllib.request.Request(self.url + path, body, headers or {}, method=method)
        try:
            with urllib.request.urlopen(call, timeout=30) as answer:
                return answer.status, json.loads(answer.read()), dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)

    def get(self, path: str) -> tuple[int, dict, dict[str, str]]:
        return self.request("GET", path)

    def infer(self, body: dict | bytes, model: str = "tiny") -> tuple[int, dict, dict[str, str]]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", f"/v2/models/{model}/infer", data, {"Content-Type": "application/json"})

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def server(bundle_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    running = Server(bundle_dir, log, "--max-texts", "8", "--max-text-chars", "200", "--max-request-bytes", "4096")
    yield running
    if running.process.poll() is None:
        running.stop()


def _texts_body(texts: list[str], name: str = "text", **extra) -> dict:
    return {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(texts)], "data": texts}], **extra}


@pytest.mark.slow
def test_tritonclient_gets_what_predict_gives(server, bundle_dir):
    """The reference client, in its default binary mode and in JSON, agrees with `Bundle.predict`."""
    import tritonclient.http as httpclient

    from pofa_openvino.runtime.bundle import Bundle

    expected = Bundle(bundle_dir).predict(TEXTS)
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
    metadata = client.get_model_metadata("tiny")
    assert [i["name"] for i in metadata["inputs"]] == ["text"]
    assert {o["name"] for o in metadata["outputs"]} == {"label", "scores", "logits"}
    for binary in (True, False):
        text = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
        text.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("label", "scores")]
        result = client.infer("tiny", [text], outputs=outputs, request_id="r1")
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").ravel()]
        assert labels == [p["label"] for p in expected]
        names = Bundle(bundle_dir).manifest["labels"]
        scores = np.array([[p["scores"][n] for n in names] for p in expected])
        np.testing.assert_allclose(result.as_numpy("scores"), scores, atol=1e-5)
        assert result.get_response()["id"] == "r1"
    client.close()


@pytest.mark.slow
def test_concurrent_requests_are_batched_and_answered_alike(server, bundle_dir):
    """Many single-text requests at once come back with the answer each would get alone."""
    from concurrent.futures import ThreadPoolExecutor

    from pofa_openvino.runtime.bundle import Bundle

    expected = {t: p["label"] for t, p in zip(TEXTS, Bundle(bundle_dir).predict(TEXTS), strict=True)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: server.infer(_texts_body([t]))[1], TEXTS * 8))
    assert [a["outputs"][0]["data"][0] for a in answers] == [expected[t] for t in TEXTS * 8]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "body", "status", "message"), [
    ("GET", "/v2/models/other", None, 404, "not found; this server has 'tiny'"),
    ("GET", "/v2/models/tiny/versions/7", None, 404, "no version '7'"),
    ("POST", "/v2/models/tiny/infer", b"{not json", 400, "not JSON"),
    ("POST", "/v2/models/tiny/infer", b"[1, 2]", 400, "needs an `inputs` list"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"], name="question"), 400, "not an input of this model"),
    ("POST", "/v2/models/tiny/infer", {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
     400, "text inputs are BYTES"),
    ("POST", "/v2/models/tiny/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a"]}]},
     400, "shape [2] but 1 strings"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"] * 9), 400, "at most 8 per request"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a" * 201]), 400, "the limit is 200"),
    ("POST", "/v2/models/tiny/infer", _texts_body([]), 400, "no text"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"], outputs=[{"name": "answer"}]), 400, "not an output"),
    ("POST", "/v2/models/tiny/infer", b'{"inputs": [' + b" " * 5000 + b"]}", 413, "the limit is 4,096"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"], id=5), 400, "`id` must be a string"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"], parameters=[1]), 400, "`parameters` must be an object"),
    ("POST", "/v2/models/tiny/infer", {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"],
                                                   "parameters": "x"}]}, 400, "input 'text': `parameters` must be"),
    ("POST", "/v2/models/tiny/infer", _texts_body(["a"], outputs=[{"name": "label", "parameters": 3}]), 400,
     "output 'label': `parameters` must be"),
    ("GET", "/v2/models/tiny/infer", None, 405, ""),
])
def test_bad_requests_get_the_protocols_error_body(server, method, path, body, status, message):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    code, answer, headers = server.request(method, path, data)
    assert code == status and set(answer) == {"error"} and message in answer["error"]
    assert "\n" not in answer["error"]
    if status == 405:
        assert headers.get("allow") == "POST" or headers.get("Allow") == "POST"


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_cleanly(bundle_dir, tmp_path):
    """Requests admitted before SIGTERM are answered; the command then exits 0 and says why it stopped."""
    from concurrent.futures import ThreadPoolExecutor

    running = Server(bundle_dir, tmp_path / "server.log", "--max-delay-ms", "200")
    body = json.dumps(_texts_body(TEXTS)).encode()
    with socket.create_connection(("127.0.0.1", running.port)) as gone:  # a client that leaves before its answer
        gone.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.02)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(running.infer, _texts_body(TEXTS)) for _ in range(4)]
        time.sleep(0.1)  # the first batch waits up to 200 ms for company: the signal lands mid-flight
        code = running.stop()
        answers = [f.result() for f in futures]
    assert code == 0, running.log.read_text()
    assert all(status == 200 and len(a["outputs"][0]["data"]) == len(TEXTS) for status, a, _ in answers)
    log = running.log.read_text()
    assert "stopped on SIGTERM" in log
    # The 4 requests' 24 texts, batched together; not the 6 of the client that left.
    served = re.search(r"served (\d+) sequences in (\d+) batches", log)
    assert served and int(served[1]) == 4 * len(TEXTS) and int(served[2]) < int(served[1]), log


@pytest.mark.slow
def test_a_port_in_use_is_one_line(bundle_dir, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run([CLI, "serve", str(bundle_dir), "--port", str(port)], capture_output=True, text=True,
                             timeout=120)
    assert ran.returncode == 1 and f"could not listen on 127.0.0.1:{port}" in ran.stderr.splitlines()[-1]
    assert "Traceback" not in ran.stderr


@pytest.mark.parametrize(("options", "message"), [
    (["--max-batch", "0"], "--max-batch must be at least 1"),
    (["--max-delay-ms", "-1"], "--max-delay-ms must be between 0 and 1000"),
    (["--streams", "0"], "--streams must be at least 1"),
    (["--max-queue", "10"], "--max-queue (10) must be at least --max-texts (64)"),
    (["--max-texts", "0"], "--max-texts must be at least 1"),
])
def test_bad_serve_options_are_usage_errors(options, message, tmp_path):
    ran = subprocess.run([CLI, "serve", str(tmp_path), *options], capture_output=True, text=True, timeout=60)
    (line,) = ran.stderr.strip().splitlines()
    assert ran.returncode == 2 and line.startswith(message)


@given(st.lists(st.integers(1, 512), min_size=1, max_size=200), st.integers(1, 64))
def test_length_groups_cover_every_sequence_once_within_the_batch_and_padding_bounds(lengths, max_batch):
    groups = length_groups(lengths, max_batch)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= max_batch
        shortest, longest = min(lengths[i] for i in group), max(lengths[i] for i in group)
        assert longest <= 2 * shortest + 8


def _sum_model() -> object:
    """A real compiled model: each row's sum of its input ids, as ``logits``."""
    import openvino as ov

    parameters = {n: ov.opset13.parameter([-1, -1], ov.Type.i64, name=n) for n in ("input_ids", "attention_mask")}
    total = ov.opset13.reduce_sum(ov.opset13.convert(parameters["input_ids"], ov.Type.f32), [1], keep_dims=True)
    total.output(0).get_tensor().set_names({"logits"})
    return ov.Core().compile_model(ov.Model([total], list(parameters.values())), "CPU")


def _number_tokenizer(calls: list[int]):
    """Text "n" is the tokens 1..n, padded with 0 to the longest; "boom" cannot be tokenized; each
    call's size goes to ``calls``."""
    def tokenize(texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        calls.append(len(texts))
        if "boom" in texts:
            raise RuntimeError("the tokenizer failed")
        lengths = [int(t) for t in texts]
        ids = np.zeros((len(texts), max(lengths)), np.int64)
        for row, length in zip(ids, lengths, strict=True):
            row[:length] = np.arange(1, length + 1)
        return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}

    return tokenize


def test_the_batcher_refuses_beyond_its_queue_and_answers_in_order():
    """Against a real compiled model: rows come back in the order given, texts are tokenized once per
    batch, admission is bounded, a text the tokenizer fails on fails only its own request, a batch
    that fails fails its requests and not the server, and the texts of a request whose client went
    away are not computed."""
    calls: list[int] = []

    def finish(outputs: dict[str, np.ndarray], ids: np.ndarray) -> list[float]:
        """Each row's sum; a batch holding text "5" (sum 15) cannot be finished."""
        sums = outputs["logits"][:, 0].tolist()
        if 15 in sums:
            raise ValueError("cannot finish")
        return sums

    async def scenario() -> None:
        batcher = DynamicBatcher(_sum_model(), _number_tokenizer(calls), finish, max_batch=4, max_delay_ms=5,
                                 max_queue=6, jobs=1)
        batcher.start()
        texts = ["3", "40", "1", "7", "2"]
        assert await batcher.submit(texts) == [sum(range(1, int(t) + 1)) for t in texts]
        assert sorted(calls) == [1, 4]  # one tokenizer call per batch of up to max_batch texts
        waiting = batcher.submit(texts[:4])
        with pytest.raises(Overloaded, match="limit 6"):
            batcher.submit(texts[:3])
        await waiting
        calls.clear()
        bad, good = batcher.submit(["boom"]), batcher.submit(["3"])  # one batch: tokenized together, then alone
        assert await good == [6] and sorted(calls) == [1, 1, 2]
        with pytest.raises(RuntimeError, match="the tokenizer failed"):
            await bad
        with pytest.raises(ValueError, match="cannot finish"):
            await batcher.submit(["5"])
        assert batcher.running
        gone = batcher.submit(texts[:2])  # a client that goes away while it waits
        gone.cancel()
        assert len(await batcher.submit(texts[2:3])) == 1
        await batcher.close()
        assert not batcher.running and batcher.admitted == 0
        assert batcher.stats["sequences"] == 11  # the failed and the cancelled texts were not computed

    asyncio.run(scenario())


def test_idle_workers_share_what_waits():
    """Texts that arrive together are split among the idle workers, not all run by the first."""
    calls: list[int] = []

    async def scenario() -> None:
        batcher = DynamicBatcher(_sum_model(), _number_tokenizer(calls), lambda outputs, ids: list(ids),
                                 max_delay_ms=20, jobs=2)
        batcher.start()
        await asyncio.sleep(0.1)  # both workers wait for work
        assert len(await batcher.submit([str(n) for n in range(1, 9)])) == 8
        await batcher.close()

    asyncio.run(scenario())
    assert sum(calls) == 8 and max(calls) == 4  # the first took its half; the rest went to the other


def test_parse_and_answer_round_trip_the_binary_extension():
    """tritonclient's binary form: 4-byte lengths then UTF-8, the JSON header's length in a header."""
    signature = Signature.of({"task": "text-classification", "text_inputs": 1, "labels": ["a", "b"]})
    strings = ["héllo", "", "x y"]
    data = b"".join(len(s.encode()).to_bytes(4, "little") + s.encode() for s in strings)
    header = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3],
                                     "parameters": {"binary_data_size": len(data)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    request = parse_infer(header + data, str(len(header)), signature, Limits())
    assert request.texts == strings and request.binary == frozenset(signature.outputs)
    values = {"label": ["a", "b", "a"], "scores": np.eye(3, 2, dtype=np.float32),
              "logits": np.zeros((3, 2), np.float32)}
    body, length = infer_response("m", request, values)
    answer = json.loads(body[:length])
    assert [o["parameters"]["binary_data_size"] for o in answer["outputs"]] == [3 * 4 + 3, 24, 24]
    tail = body[length:]
    assert [tail[4 * i + i:4 * i + i + 5] for i in range(3)] == [b"\x01\x00\x00\x00" + c for c in (b"a", b"b", b"a")]
    np.testing.assert_array_equal(np.frombuffer(tail[15:39], "<f4").reshape(3, 2), values["scores"])
    with pytest.raises(ValueError):
        infer_response("m", request, {**values, "scores": np.full((3, 2), np.nan, np.float32)})
    with pytest.raises(ProtocolError, match="is not a length"):
        parse_infer(header + data, "999999", signature, Limits())
    with pytest.raises(ProtocolError, match="not UTF-8"):
        parse_infer(header + data.replace("é".encode(), b"\xff\xfe"), str(len(header)), signature, Limits())


def test_serving_stays_out_of_the_light_runtime():
    """`serve` pulls Starlette and uvicorn only when serving; `Bundle` alone does not load them."""
    code = ("import sys; from pofa_openvino.runtime.bundle import Bundle; "
            "sys.exit(any(m.split('.')[0] in ('starlette', 'uvicorn', 'anyio') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], env={**os.environ}).returncode == 0


# OVMS's config schema (src/schema.cpp, MODELS_CONFIG_SCHEMA): the keys a model's `config` may have.
OVMS_CONFIG_KEYS = {"name", "base_path", "batch_size", "graph_path", "subconfig", "model_version_policy", "shape",
                    "layout", "nireq", "target_device", "allow_cache", "plugin_config", "custom_loader_options"}


@pytest.mark.slow
def test_the_ovms_repository_holds_one_strings_in_model_that_answers_like_predict(bundle_dir, tmp_path):
    """The layout OVMS loads, a config within its schema, and a graph that a fresh OpenVINO process
    (as OVMS is: the tokenizers extension loaded, the plugin_config applied) runs on raw strings."""
    from pofa_openvino.runtime.bundle import Bundle

    repo = tmp_path / "repo"
    ran = subprocess.run([CLI, "package", str(bundle_dir), "--format", "ovms", "-o", str(repo)], capture_output=True,
                         text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert "docker run" in ran.stdout and "--cpu_extension /ovms/lib/libopenvino_tokenizers.so" in ran.stdout
    (entry,) = json.loads((repo / "config.json").read_text())["model_config_list"]
    config = entry["config"]
    assert set(entry) == {"config"} and set(config) <= OVMS_CONFIG_KEYS and config["name"] == "tiny"
    assert all(isinstance(v, str | bool | int | float) for v in config["plugin_config"].values())
    assert config["plugin_config"] == json.loads((bundle_dir / "runtime_config.json").read_text())["CPU"]
    assert sorted(p.name for p in (repo / config["base_path"]).iterdir()) == ["1"]
    assert sorted(p.name for p in (repo / config["base_path"] / "1").iterdir()) == ["model.bin", "model.xml"]
    code = f"""
import json, sys, numpy as np, openvino as ov, openvino_tokenizers
config = json.loads(sys.argv[1])
core = ov.Core()
compiled = core.compile_model(core.read_model(sys.argv[2]), "CPU", config["plugin_config"])
assert [i.get_any_name() for i in compiled.inputs] == ["text"], compiled.inputs
out = {{o.get_any_name(): v for o, v in compiled([np.array({TEXTS!r})]).items()}}
print(json.dumps({{"label": [str(x) for x in out["label"]], "scores": out["scores"].tolist()}}))
"""
    fresh = subprocess.run([sys.executable, "-c", code, json.dumps(config), str(repo / "tiny" / "1" / "model.xml")],
                           capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    served = json.loads(fresh.stdout)
    bundle = Bundle(bundle_dir)
    expected = bundle.predict(TEXTS)
    assert served["label"] == [p["label"] for p in expected]
    np.testing.assert_allclose(served["scores"], [[p["scores"][n] for n in bundle.manifest["labels"]]
                                                  for p in expected], atol=1e-5)


@pytest.mark.slow
def test_the_ovms_repository_replaces_only_its_own(bundle_dir, tmp_path):
    repo, foreign = tmp_path / "repo", tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    first = subprocess.run([CLI, "package", str(bundle_dir), "--format", "ovms", "-o", str(repo)], capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (repo / "keep.txt").write_text("the user's")
    again = subprocess.run([CLI, "package", str(bundle_dir), "--format", "ovms", "-o", str(repo)], capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 1 and "pass --force to replace it" in again.stderr
    forced = subprocess.run([CLI, "package", str(bundle_dir), "--format", "ovms", "-o", str(repo), "--force"],
                            capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0 and (repo / "keep.txt").read_text() == "the user's"
    refused = subprocess.run([CLI, "package", str(bundle_dir), "--format", "ovms", "-o", str(foreign), "--force"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "holds no OVMS repository of this tool" in refused.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_serve_needs_only_the_base_install_and_the_serve_extra(bundle_dir, tmp_path):
    """`pip install 'pofa-openvino[serve]'` in a clean venv: no torch, no transformers, and it serves."""
    bin_dir = clean_venv(tmp_path / "venv", "serve")
    for heavy in ("torch", "transformers", "neural_compressor", "nncf"):
        assert subprocess.run([str(bin_dir / "python"), "-c", f"import {heavy}"], capture_output=True).returncode
    running = Server(bundle_dir, tmp_path / "server.log", cli=str(bin_dir / "pofa-openvino"))
    try:
        status, answer, _ = running.infer(_texts_body(TEXTS[:2]))
    finally:
        assert running.stop() == 0
    from pofa_openvino.runtime.bundle import Bundle

    assert status == 200 and answer["outputs"][0]["data"] == [p["label"] for p in Bundle(bundle_dir).predict(TEXTS[:2])]
