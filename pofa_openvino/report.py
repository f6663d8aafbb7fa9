"""``report.md``: the human view of ``report.json`` (every figure comes from the JSON)."""

from __future__ import annotations

from typing import Any

from .bench import BUSY


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, shared by report.md and the CLI's closing table."""
    rows: list[tuple[str, str]] = []
    model = report.get("model")
    if model:
        rows.append(("model", f"{model['name_or_path']} ({model['architecture']}, "
                              f"{model['parameters'] / 1e6:.1f}M parameters)"))
    rows += _gap_rows(report)
    pretrain = report.get("pretrain")
    if pretrain:
        checkpoint, training = pretrain["checkpoint"], pretrain["training"]
        rows.append(("prune once", f"{checkpoint['pruning_type']} {checkpoint['pattern']} to "
                                   f"{100 * checkpoint['sparsity']:.2f}% (lowest layer "
                                   f"{100 * checkpoint['min_layer_sparsity']:.2f}%), {training['steps']} steps on "
                                   f"{pretrain['texts']} texts, {training['seconds']:.0f} s"))
        rows.append(("prune-once loss", f"{pretrain['loss']}; held-out {pretrain['held_out_loss_before']:.4g} "
                                        f"(dense) -> {training['history'][-1]['held_out_loss']:.4g}"))
    sparsity = report.get("sparsity")
    if sparsity:
        loaded = f" (loaded: {100 * sparsity['loaded_overall']:.2f}%)" if "loaded_overall" in sparsity else ""
        rows.append(("sparsity (prunable Linear layers)", f"{100 * sparsity['overall']:.2f}%{loaded}"))
    structure = report.get("structure")
    if structure:
        layers = structure["layers"]
        rows.append(("structure kept (heads / FFN neurons per layer)",
                     ", ".join(f"{layer['heads']}/{layer['intermediate_size']}" for layer in layers)))
        rows.append((f"encoder GFLOPs at {structure['sequence_length']} tokens",
                     f"{structure['flops_before'] / 1e9:.2f} -> {structure['flops_after'] / 1e9:.2f} "
                     f"({structure['flops_ratio']:.2f}x fewer); {structure['parameters_before'] / 1e6:.1f}M -> "
                     f"{structure['parameters_after'] / 1e6:.1f}M parameters; slimmed vs masked logits max |diff| "
                     f"{structure['max_abs_logit_diff']:.1e}"))
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
        if (model or {}).get("published"):
            rows.append(("published (model card) / measured", _versus_published(model["published"], accuracy)))
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
    bench = report.get("benchmark")
    if bench:
        at = str(bench["settings"]["throughput_sequence_length"])
        speedups = bench["ratios"].get("vs_torch_fp32", {})
        rows.append((f"median latency, {at} tokens, batch {bench['settings']['batch_size']}", "; ".join(
            f"{figures['label']} {figures['latency_ms'][at]['median_ms']:.2f} ms"
            + (f" ({speedups[name]['latency_speedup'][at]:.2f}x)" if name in speedups else "")
            for name, figures in bench["variants"].items() if at in figures["latency_ms"])))
    return rows


RUNNERS = {"torch_fp32": "torch FP32", "openvino_fp32": "OpenVINO FP32", "openvino_int8": "OpenVINO INT8",
           "openvino_deployed": "OpenVINO (not quantized)"}


def markdown(report: dict[str, Any]) -> str:
    title = f"Run report: {report['recipe']['name']}" if "recipe" in report else f"Benchmark: {report['target']}"
    lines = [f"# {title}", ""]
    rows = summary_rows(report)
    if rows:
        lines += ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    timings = report.get("timings") or {}
    if timings:
        lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {name} | {seconds if seconds is not None else '-'} |" for name, seconds in timings.items()]
    structure = report.get("structure")
    if structure:
        lines += ["", "## Structure kept (heads and FFN neurons removed, then slimmed)", "",
                  f"FFN widths rounded up to a multiple of {structure['multiple']} (the extra neurons are zero).", "",
                  "| layer | heads kept | heads | FFN neurons kept | neurons with weights |",
                  "|---:|---|---:|---:|---:|"]
        lines += [f"| {i} | {', '.join(map(str, layer['kept_heads']))} | {layer['heads']} | "
                  f"{layer['intermediate_size']} | {layer['neurons_alive']} |"
                  for i, layer in enumerate(structure["layers"])]
    sparsity = report.get("sparsity")
    if sparsity:
        lines += ["", "## Per-layer sparsity (Linear weights)", "",
                  "| layer | shape | zeros | prunable | INT8 zeros | sparse-kernel shape |",
                  "|---|---|---:|---|---:|---|"]
        lines += [f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | "
                  f"{100 * layer['zero_fraction']:.2f}% | {_yes(layer['prunable'])} | "
                  f"{_percent(layer.get('int8_zero_fraction'))} | {_yes(layer.get('eligible_for_sparse'))} |"
                  for layer in sparsity["layers"]]
    if report.get("benchmark"):
        lines += ["", *benchmark_markdown(report["benchmark"])]
    return "\n".join(lines) + "\n"


def _gap_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline of a pruning run: the dense reference measured in the same run, and the gap to it."""
    accuracy = report.get("accuracy") or {}
    reference, gap = accuracy.get("dense_reference"), accuracy.get("gap")
    if not reference:
        return []
    metric = accuracy["metric"]
    rows = [("dense reference", f"{metric} {reference['torch_fp32'][metric]:.4f}: {reference['source']}")]
    teacher = report.get("teacher")
    if teacher:
        training = teacher["training"]
        rows[0] = (rows[0][0], f"{rows[0][1]}, {training['steps']} steps, {training['seconds']:.0f} s")
    if gap:
        verdict = "over report.max_gap: see the log for what to change" if gap["exceeded"] else "within report.max_gap"
        rows.append((f"gap to dense ({RUNNERS.get(gap['measured'], gap['measured'])})",
                     f"{gap['points'][metric]:.2f} points of {metric} ({verdict} {gap['max_gap_points']:.1f})"))
    return rows


def benchmark_markdown(bench: dict[str, Any]) -> list[str]:
    """Figures per variant, then ratios against each baseline, then the charts."""
    machine, settings, variants = bench["machine"], bench["settings"], bench["variants"]
    lengths = [str(n) for n in settings["sequence_lengths"]]
    flags = ", ".join(f"{name} {'yes' if on else 'no'}" for name, on in machine["flags"].items())
    lines = ["## Benchmark", "",
             f"{bench['date']} on {machine['cpu']} ({machine['cores_used']} threads of {machine['logical_cpus']}; "
             f"{flags}); batch {settings['batch_size']}; per variant and length {settings['duration_s']} s of "
             f"latency runs in {settings['rounds']} rounds interleaved with the other variants, after "
             f"{settings['warmup']} warm-up runs; " + ", ".join(f"{k} {v}" for k, v in bench["versions"].items() if v)
             + _other_load(machine.get("other_processes_cpu_share")),
             "", "| variant | precision | size MB | load+compile s | memory MB (peak RSS added) | "
             + " | ".join(f"{n} tokens ms (median / p90)" for n in lengths)
             + f" | throughput/s at {settings['throughput_sequence_length']} tokens |",
             "|---|---|---:|---:|---:|" + "---:|" * len(lengths) + "---:|"]
    for figures in variants.values():
        latency = [f"{figures['latency_ms'][n]['median_ms']:.2f} / {figures['latency_ms'][n]['p90_ms']:.2f}"
                   if n in figures["latency_ms"] else "-" for n in lengths]
        throughput = figures["throughput"]
        how = throughput["mode"] + (f", {throughput['requests']} requests" if throughput["requests"] > 1 else "")
        lines.append(f"| {figures['label']} | {figures['precision']} | {figures['size_bytes'] / 1e6:.1f} | "
                     f"{figures['compile_s']:.2f} | {_number(figures['peak_rss_mb'], '.0f')} | {' | '.join(latency)} | "
                     f"{throughput['items_per_s']:.1f} ({how}) |")
    for baseline, table in bench["ratios"].items():
        base = variants[baseline.removeprefix("vs_")]["label"]
        lines += ["", f"Ratios against {base} (speedup = its median latency / the variant's; throughput, "
                      "size and memory = the variant's / its):", "",
                  "| variant | " + " | ".join(f"speedup at {n}" for n in lengths) + " | throughput | size | memory |",
                  "|---|" + "---:|" * (len(lengths) + 3)]
        for name, ratio in table.items():
            speedups = [_number(ratio["latency_speedup"].get(n), ".2f", "x") for n in lengths]
            lines.append(f"| {variants[name]['label']} | {' | '.join(speedups)} | {ratio['throughput']:.2f}x | "
                         f"{ratio['size']:.3f}x | {_number(ratio.get('peak_rss'), '.2f', 'x')} |")
    for figures in variants.values():
        if "runtime" in figures:
            runtime = figures["runtime"]
            kernels = ", ".join(f"{k} x{n}" for k, n in runtime.get("kernel_types", {}).items())
            lines += ["", f"{figures['label']}: " + (f"FullyConnected kernels executed: {kernels}. " if kernels else "")
                      + runtime["note"]]
    lines += [""] + [f"![{name}]({path})" for name, path in bench.get("charts", {}).items()]
    return lines


def _versus_published(published: dict[str, float], accuracy: dict[str, Any]) -> str:
    """Each published metric next to what this run measured (torch FP32, and OpenVINO INT8 when run)."""
    mismatched = accuracy.get("splits", {}).get("validation_mismatched", {}).get("accuracy")
    shown = []
    for metric, value in published.items():
        measured = [f"{label} {scores[metric]:.4f}" for label, scores in
                    (("torch FP32", accuracy.get("torch_fp32", {})), ("INT8", accuracy.get("openvino_int8", {})))
                    if metric in scores]
        if metric == "accuracy_mismatched" and mismatched is not None:
            measured = [f"torch FP32 {mismatched:.4f}"]
        shown.append(f"{metric} {value:.4f} / {', '.join(measured) or 'not measured'}")
    return "; ".join(shown)


def _other_load(share: float | None) -> str:
    if share is None:
        return ""
    verdict = "**not reliable: rerun on an idle machine**" if share > BUSY else "idle enough"
    return f". Other processes used {100 * share:.0f}% of the CPU meanwhile: {verdict}"


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
