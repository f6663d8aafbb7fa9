"""A bundle as an OpenVINO Model Server (OVMS) model repository: ``NAME/1/model.xml`` holding one
strings-in graph (the bundle's tokenizer wired into its INT8 model, with ``label`` and ``scores``
added after ``logits``), and a ``config.json`` whose ``plugin_config`` is the bundle's runtime config.
Why one graph: any Open Inference Protocol client (OVMS, KServe, Triton's) then sends raw text and
gets the label back, with no tokenizer on the client. Runtime side: openvino, openvino-tokenizers and
numpy only, so it runs where the bundle runs.

``openvino_tokenizers.connect_models`` would do the wiring, but in 2026.4 it drops the tokenizer's
state sink (its ``truncation`` variable's ``Assign``) and the result does not compile; the wiring here
keeps the tokenizer's sinks."""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PofaError
from .bundle import Bundle, BundleError, verify
from .overwrite import OutputKind, check_output, claim_output, marker_record, write_marker
from .tasks import CLASSIFICATION

log = logging.getLogger(__name__)

VERSION_DIR = "1"
MODEL_XML = "model.xml"
MARKER = ".pofa-ovms.json"  # what this tool wrote, so --force replaces only that
OVMS_OUTPUT = OutputKind("an OVMS repository", marker_record(MARKER))
OVMS_IMAGE = "openvino/model_server:latest"  # any release on OpenVINO 2026.4 or newer
TOKENIZERS_EXTENSION = "/ovms/lib/libopenvino_tokenizers.so"  # where the OVMS image keeps it
INPUT_NAMES = ("text", "text_pair")  # the string inputs, named as `serve` names them
AGREEMENT = 1e-4  # max |logit| difference between the one graph and the bundle's two models


@cache
def _core() -> Any:
    """One ``ov.Core`` for the life of the process. Why: graphs edited across models keep nodes of the
    tokenizer extension; a Core that dies before them unloads the extension and the process crashes."""
    import openvino as ov
    import openvino_tokenizers  # noqa: F401  (registers the tokenizer operations)

    return ov.Core()


def strings_in_model(bundle: Bundle) -> Any:
    """The bundle's tokenizer and model as one ``ov.Model``: string inputs ``text`` (and
    ``text_pair``), outputs ``label`` (the top label's name), ``scores`` (softmax) and ``logits``."""
    import openvino as ov
    from openvino import opset13 as ops

    if bundle.task != CLASSIFICATION.name:
        raise BundleError(f"the OVMS layout holds {CLASSIFICATION.name} bundles; this one is {bundle.task} "
                          "(serve it with `pofa-openvino serve`, which extracts the answer span)")
    tokenizer = _core().read_model(bundle.root / "tokenizer" / "openvino_tokenizer.xml")
    model = _core().read_model(bundle.root / "model" / "openvino_model.xml")
    tokens = {output.get_any_name(): output.get_node().input_value(0) for output in tokenizer.outputs}
    for parameter in model.get_parameters():
        name = parameter.output(0).get_any_name()
        if name not in tokens:
            raise BundleError(f"model/openvino_model.xml: input {name!r} is not a tokenizer output "
                              f"({', '.join(tokens)})")
        for target in list(parameter.output(0).get_target_inputs()):
            target.replace_source_output(tokens[name])
    logits = model.output("logits").get_node().input_value(0)
    names = ov.op.Constant(ov.Tensor(np.array(bundle.manifest["labels"])))
    best = ops.squeeze(ops.topk(logits, 1, -1, "max", "none").output(1), [1])
    outputs = {"label": ops.gather(names, best, 0).output(0), "scores": ops.softmax(logits, -1).output(0),
               "logits": logits}
    results = []
    for name, output in outputs.items():
        result = ops.result(output)
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    for parameter, name in zip(tokenizer.get_parameters(), INPUT_NAMES, strict=False):
        parameter.output(0).get_tensor().set_names({name})
    return ov.Model(results, tokenizer.get_sinks(), tokenizer.get_parameters(), bundle.manifest["name"])


def check_agreement(bundle: Bundle, one_graph: Any, texts: list[str], pairs: list[str] | None) -> float:
    """The one graph's logits against the bundle's two-model path on the same texts, compiled with the
    same runtime config; returns the max difference, raises when over :data:`AGREEMENT`."""
    compiled = _core().compile_model(one_graph, "CPU", bundle.model.properties)
    strings = [np.array(texts)] + ([np.array(pairs)] if pairs is not None else [])
    got = {output.get_any_name(): value for output, value in compiled(strings).items()}
    expected, _ = bundle.outputs(texts, pairs)
    worst = float(np.abs(got["logits"] - expected["logits"]).max())
    labels = bundle.manifest["labels"]
    if not worst <= AGREEMENT or list(got["label"]) != [labels[i] for i in expected["logits"].argmax(-1)]:
        raise PofaError(f"the one-graph model disagrees with the bundle (max logit difference {worst:.3g}, "
                        f"tolerance {AGREEMENT}); please report this")
    return worst


def ovms_config(name: str, plugin_config: dict[str, Any]) -> dict[str, Any]:
    """OVMS's ``config.json`` for one model; ``base_path`` is relative to the config file (OVMS reads it so)."""
    return {"model_config_list": [{"config": {"name": name, "base_path": name, "target_device": "CPU",
                                              "plugin_config": plugin_config}}]}


def write_model_repository(bundle_path: str | Path, out: str | Path, name: str | None = None,
                           force: bool = False) -> dict[str, Any]:
    """Verify the bundle, then write its OVMS model repository into ``out`` (new or empty; with
    ``force``, one this tool wrote is replaced, and nothing else is ever removed)."""
    verified = verify(bundle_path)
    bundle = Bundle(bundle_path, check=False)
    name = name or bundle.manifest["name"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        raise PofaError(f"model name {name!r}: use letters, digits, '.', '_' or '-' (it is a URL path part)")
    out = Path(out)
    check_output(out, OVMS_OUTPUT, force)  # refused before the graph is built; replaced once it agrees
    graph = strings_in_model(bundle)
    selftest = json.loads((bundle.root / "selftest.json").read_text(encoding="utf-8"))
    difference = check_agreement(bundle, graph, selftest["texts"], selftest.get("pairs"))
    import openvino as ov

    claim_output(out, OVMS_OUTPUT, force)
    write_marker(out, MARKER, ["config.json", "README.md", name], bundle=bundle.manifest["name"])
    version = out / name / VERSION_DIR
    version.mkdir(parents=True)
    ov.save_model(graph, version / MODEL_XML, compress_to_fp16=False)
    plugin_config = dict(bundle.model.properties)
    (out / "config.json").write_text(json.dumps(ovms_config(name, plugin_config), indent=2) + "\n")
    (out / "README.md").write_text(_readme(name, bundle, plugin_config))
    log.info("OVMS model repository %s: model %r, one strings-in graph (agrees with the bundle within %.2g), "
             "plugin_config %s", out, name, difference, plugin_config)
    return {"dir": str(out), "name": name, "inputs": list(INPUT_NAMES[:bundle.manifest["text_inputs"]]),
            "outputs": ["label", "scores", "logits"], "plugin_config": plugin_config,
            "max_logit_difference": difference, "bundle_selftest": verified["selftest"]}


def docker_command(repository: str | Path) -> str:
    """The ``docker run`` line that serves a repository with OVMS on port 8000 (tokenizers extension loaded)."""
    return (f'docker run --rm -p 8000:8000 -v "{repository}":/models:ro {OVMS_IMAGE} '
            f"--config_path /models/config.json --rest_port 8000 --cpu_extension {TOKENIZERS_EXTENSION}")


def _readme(name: str, bundle: Bundle, plugin_config: dict[str, Any]) -> str:
    pair = bundle.manifest["text_inputs"] == 2
    inputs = '{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a fine film"]}' + (
        ', {"name": "text_pair", "datatype": "BYTES", "shape": [1], "data": ["a second text"]}' if pair else "")
    return f"""# {name}: OpenVINO Model Server repository

Written by `pofa-openvino package --format ovms` from the bundle `{bundle.manifest['name']}`.

- `{name}/1/model.xml`: one graph, raw strings in (`text`{', `text_pair`' if pair else ''}), the bundle's
  tokenizer and INT8 model inside; outputs `label` (BYTES: one of {', '.join(bundle.manifest['labels'])}),
  `scores` (FP32 softmax, labels in that order) and `logits` (FP32).
- `config.json`: the model with `plugin_config` {json.dumps(plugin_config)} (the bundle's runtime
  config for its target).

Serve it (the tokenizer operations need OVMS's tokenizers extension):

    {docker_command("$PWD")}

Ask it (Open Inference Protocol, the same request `pofa-openvino serve` answers):

    curl -s localhost:8000/v2/models/{name}/infer -d '{{"inputs": [{inputs}]}}'
"""
