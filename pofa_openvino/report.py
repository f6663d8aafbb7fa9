"""``report.md``: the human view of ``report.json`` (every figure comes from the JSON)."""

from __future__ import annotations

from typing import Any

from .measure import BUSY


def merged(report: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """``report`` with a stage's sections added as report.json will hold them (a mapping updates the
    section of the same name, anything else replaces it)."""
    out = dict(report)
    for key, value in sections.items():
        before = out.get(key)
        out[key] = {**before, **value} if isinstance(before, dict) and isinstance(value, dict) else value
    return out


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures, shared by report.md, the CLI's closing table and the model card."""
    return [row for part in SUMMARY for row in part(report)]


def model_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    model = report.get("model")
    if not model:
        return []
    return [("model", f"{model['name_or_path']} ({model['architecture']}, "
                      f"{model['parameters'] / 1e6:.1f}M parameters)")]


def pretrain_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    pretrain = report.get("pretrain")
    if not pretrain:
        return []
    checkpoint, training = pretrain["checkpoint"], pretrain["training"]
    return [("prune once", f"{checkpoint['pruning_type']} {checkpoint['pattern']} to "
                           f"{100 * checkpoint['sparsity']:.2f}% (lowest layer "
                           f"{100 * checkpoint['min_layer_sparsity']:.2f}%), {training['steps']} steps on "
                           f"{pretrain['texts']} texts, {training['seconds']:.0f} s"),
            ("prune-once loss", f"{pretrain['loss']}; held-out {pretrain['held_out_loss_before']:.4g} "
                                f"(dense) -> {training['history'][-1]['held_out_loss']:.4g}")]


def sparsity_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Zeros counted from the saved tensors (and what the model arrived with)."""
    sparsity = report.get("sparsity")
    if not sparsity:
        return []
    loaded = f" (loaded: {100 * sparsity['loaded_overall']:.2f}%)" if "loaded_overall" in sparsity else ""
    return [("sparsity (prunable Linear layers)", f"{100 * sparsity['overall']:.2f}%{loaded}")]


def structure_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    structure = report.get("structure")
    if not structure:
        return []
    layers = structure["layers"]
    return [("structure kept (heads / FFN neurons per layer)",
             ", ".join(f"{layer['heads']}/{layer['intermediate_size']}" for layer in layers)),
            (f"encoder GFLOPs at {structure['sequence_length']} tokens",
             f"{structure['flops_before'] / 1e9:.2f} -> {structure['flops_after'] / 1e9:.2f} "
             f"({structure['flops_ratio']:.2f}x fewer); {structure['parameters_before'] / 1e6:.1f}M -> "
             f"{structure['parameters_after'] / 1e6:.1f}M parameters; slimmed vs masked logits max |diff| "
             f"{structure['max_abs_logit_diff']:.1e}")]


def training_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    training = report.get("training")
    if not training:
        return []
    return [("fine-tuning", f"{training['steps']} steps, {training['epochs']} epochs, "
                            f"final loss {training['final_loss']:.4f}, {training['seconds']:.0f} s")]


def accuracy_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The task metric of every model the run measured, INT8 against FP32, and the published figures."""
    accuracy = report.get("accuracy")
    if not accuracy or "split" not in accuracy:
        return []
    rows = []
    where = f"{accuracy['split']} ({accuracy['eval_samples']} examples)"
    for key, label in RUNNERS.items():
        if key in accuracy:
            rows.append((f"{where}, {label}", ", ".join(f"{k} {v:.4f}" for k, v in accuracy[key].items())))
    if "delta" in accuracy:
        rows.append(("INT8 vs torch FP32", ", ".join(f"{k} {v:+.4f}" for k, v in accuracy["delta"].items())))
    model = report.get("model") or {}
    if model.get("published"):
        rows.append(("published (model card) / measured", _versus_published(model["published"], accuracy)))
    return rows


def quantization_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    quantization = report.get("quantization")
    if not quantization:
        return []
    return [("quantization", f"{quantization['approach']}: {quantization['layers_int8']} INT8 Linear layers, "
                             f"{quantization['zeros_revived']} zeros revived, float: "
                             f"{', '.join(quantization['layers_float']) or 'none'}")]


def parity_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    parity = report.get("parity")
    if not parity:
        return []
    return [("OpenVINO FP32 vs torch logits", f"max |diff| {parity['max_abs_logit_diff']:.1e} on "
                                              f"{parity['samples']} samples")]


def runtime_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The CPU the run measured on, the sparse rate, and whether its kernels ran (executed kernel types)."""
    runtime = report.get("runtime")
    if not runtime:
        return []
    rate = runtime["sparse_rate"] if runtime["sparse_rate"] is not None else "off"
    return [("CPU", f"{runtime['cpu']} (AMX: {'yes' if runtime['amx'] else 'no'})"),
            ("sparse weight decompression", f"rate {rate}, {runtime['sparse_layers_eligible']} layers "
                                            f"eligible, {runtime['sparse_layers_active']} ran sparse kernels"),
            ("runtime note", runtime["note"])]


def speed_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """Median latency of every variant at the throughput length, and its speedup over PyTorch FP32."""
    bench = report.get("benchmark")
    if not bench:
        return []
    at = str(bench["settings"]["throughput_sequence_length"])
    speedups = bench["ratios"].get("vs_torch_fp32", {})
    return [(f"median latency, {at} tokens, batch {bench['settings']['batch_size']}", "; ".join(
        f"{figures['label']} {figures['latency_ms'][at]['median_ms']:.2f} ms"
        + (f" ({speedups[name]['latency_speedup'][at]:.2f}x)" if name in speedups else "")
        for name, figures in bench["variants"].items() if at in figures["latency_ms"]))]


def table(rows: list[tuple[str, str]]) -> list[str]:
    """Two-column Markdown rows (no header names: the first column names each figure)."""
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)] if rows else []


RUNNERS = {"torch_fp32": "torch FP32", "openvino_fp32": "OpenVINO FP32", "openvino_int8": "OpenVINO INT8",
           "openvino_deployed": "OpenVINO (not quantized)", "bundle": "OpenVINO INT8, INT8 embeddings (the bundle)"}


def markdown(report: dict[str, Any]) -> str:
    title = f"Run report: {report['recipe']['name']}" if "recipe" in report else f"Benchmark: {report['target']}"
    lines = [f"# {title}", ""]
    lines += table(summary_rows(report))
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
    if report.get("sparsity"):
        lines += ["", "## Per-layer sparsity (Linear weights)", "", *layer_sparsity(report["sparsity"])]
    if report.get("benchmark"):
        lines += ["", *benchmark_markdown(report["benchmark"])]
    return "\n".join(lines) + "\n"


def layer_sparsity(sparsity: dict[str, Any]) -> list[str]:
    """Zeros per Linear weight (float, then INT8) and whether its shape suits the sparse kernel."""
    return ["| layer | shape | zeros | prunable | INT8 zeros | sparse-kernel shape |", "|---|---|---:|---|---:|---|",
            *(f"| {layer['name']} | {'x'.join(map(str, layer['shape']))} | {100 * layer['zero_fraction']:.2f}% | "
              f"{_yes(layer['prunable'])} | {_percent(layer.get('int8_zero_fraction'))} | "
              f"{_yes(layer.get('eligible_for_sparse'))} |" for layer in sparsity["layers"])]


def gap_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
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
        limit = f"report.max_gap {gap['max_gap_points']:.1f}"
        verdict = f"over {limit}: see the log for what to change" if gap["exceeded"] else f"within {limit}"
        rows.append((f"gap to dense ({RUNNERS.get(gap['measured'], gap['measured'])})",
                     f"{gap['points'][metric]:.2f} points of {metric} ({verdict})"))
    return rows


SUMMARY = (model_rows, gap_rows, pretrain_rows, sparsity_rows, structure_rows, training_rows, accuracy_rows,
           quantization_rows, parity_rows, runtime_rows, speed_rows)


def _real_text_markdown(bench: dict[str, Any]) -> list[str]:
    """Sentences/s on real text (each at its own length, then sorted batches, then async) beside the
    fixed-length runs padded to the throughput length: what short real requests cost against a fixed pad."""
    if "real_text" not in bench:
        return []
    real, padded = bench["real_text"], bench["settings"]["throughput_sequence_length"]
    tokens = real["tokens"]
    lines = ["", f"Real text: {real['texts']} texts, each tokenized alone (median {tokens['median']:.0f} tokens, p90 "
                 f"{tokens['p90']:.0f}, p99 {tokens['p99']:.0f}, max {tokens['max']}); sentences/s:", "",
             f"| variant | batch {bench['settings']['batch_size']} padded to {padded} | batch 1 at real length | "
             "real length p50 / p90 / p99 ms | "
             "sorted batches of 32 (padding share) | async sorted batches |", "|---|---:|---:|---:|---:|---:|"]
    for figures in bench["variants"].values():
        text = figures["real_text"]
        single, batches = text["batch1"], text["sorted_batches"]
        lines.append(f"| {figures['label']} | {text['padded']['sentences_per_s']:.0f} | "
                     f"{single['sentences_per_s']:.0f} | {single['median_ms']:.2f} / {single['p90_ms']:.2f} / "
                     f"{single['p99_ms']:.2f} | {batches['sentences_per_s']:.0f} "
                     f"({100 * batches['padding_share']:.0f}%) | "
                     f"{_number(text.get('async', {}).get('sentences_per_s'), '.0f')} |")
    return lines


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
    lines += _real_text_markdown(bench)
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
