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
        scores = ", ".join(f"{k} {v:.4f}" for k, v in accuracy["torch_fp32"].items())
        rows.append((f"{accuracy['split']} ({accuracy['eval_samples']} examples), torch FP32", scores))
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Run report: {report['recipe']['name']}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(report)]
    timings = report.get("timings") or {}
    if timings:
        lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {name} | {seconds if seconds is not None else '-'} |" for name, seconds in timings.items()]
    sparsity = report.get("sparsity")
    if sparsity:
        lines += ["", "## Per-layer sparsity (Linear weights)", "", "| layer | shape | zeros | prunable |",
                  "|---|---|---:|---|"]
        lines += [f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | "
                  f"{100 * layer['zero_fraction']:.2f}% | {'yes' if layer['prunable'] else 'no'} |"
                  for layer in sparsity["layers"]]
    return "\n".join(lines) + "\n"
