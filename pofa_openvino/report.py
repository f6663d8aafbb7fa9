"""``report.md``: the human view of ``report.json`` (every figure comes from the JSON)."""

from __future__ import annotations

from typing import Any


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, shared by report.md and the CLI's closing table."""
    rows: list[tuple[str, str]] = []
    model = report.get("model")
    if model:
        rows.append(("model", f"{model['name_or_path']} ({model['architecture']}, "
                              f"{model['parameters'] / 1e6:.1f}M parameters)"))
    sparsity = report.get("sparsity")
    if sparsity:
        rows.append(("sparsity (prunable Linear layers)",
                     f"{100 * sparsity['overall']:.2f}% (loaded: {100 * sparsity['loaded_overall']:.2f}%)"))
    training = report.get("training")
    if training:
        rows.append(("fine-tuning", f"{training['steps']} steps, {training['epochs']} epochs, "
                                    f"final loss {training['final_loss']:.4f}, {training['seconds']:.0f} s"))
    accuracy = report.get("accuracy")
    if accuracy:
        where = f"{accuracy['split']} ({accuracy['eval_samples']} examples)"
        for key, label in RUNNERS.items():
            if key in accuracy:
                rows.append((f"{where}, {label}", ", ".join(f"{k} {v:.4f}" for k, v in accuracy[key].items())))
        if "delta" in accuracy:
            rows.append(("INT8 vs torch FP32", ", ".join(f"{k} {v:+.4f}" for k, v in accuracy["delta"].items())))
    quantization = report.get("quantization")
    if quantization:
        rows.append(("quantization", f"{quantization['approach']}: {quantization['layers_int8']} INT8 Linear layers, "
                                     f"{quantization['zeros_revived']} zeros revived, float: "
                                     f"{', '.join(quantization['layers_float']) or 'none'}"))
    parity = report.get("parity")
    if parity:
        rows.append(("OpenVINO FP32 vs torch logits", f"max |diff| {parity['max_abs_logit_diff']:.1e} on "
                                                      f"{parity['samples']} samples"))
    runtime = report.get("runtime")
    if runtime:
        rate = runtime["sparse_rate"] if runtime["sparse_rate"] is not None else "off"
        rows.append(("CPU", f"{runtime['cpu']} (AMX: {'yes' if runtime['amx'] else 'no'})"))
        rows.append(("sparse weight decompression", f"rate {rate}, {runtime['sparse_layers_eligible']} layers "
                                                    f"eligible, {runtime['sparse_layers_active']} ran sparse kernels"))
        rows.append(("runtime note", runtime["note"]))
    return rows


RUNNERS = {"torch_fp32": "torch FP32", "openvino_fp32": "OpenVINO FP32", "openvino_int8": "OpenVINO INT8",
           "openvino_deployed": "OpenVINO (not quantized)"}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Run report: {report['recipe']['name']}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(report)]
    timings = report.get("timings") or {}
    if timings:
        lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {name} | {seconds if seconds is not None else '-'} |" for name, seconds in timings.items()]
    sparsity = report.get("sparsity")
    if sparsity:
        lines += ["", "## Per-layer sparsity (Linear weights)", "",
                  "| layer | shape | zeros | prunable | INT8 zeros | sparse-kernel shape |",
                  "|---|---|---:|---|---:|---|"]
        lines += [f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | "
                  f"{100 * layer['zero_fraction']:.2f}% | {_yes(layer['prunable'])} | "
                  f"{_percent(layer.get('int8_zero_fraction'))} | {_yes(layer.get('eligible_for_sparse'))} |"
                  for layer in sparsity["layers"]]
    return "\n".join(lines) + "\n"


def _yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
