"""PNG charts of a benchmark result (matplotlib, headless): latency by variant and sequence length,
and size on disk by variant. Every bar is a figure from the result."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_charts(result: dict[str, Any], out_dir: Path, sub: str) -> dict[str, str]:
    """Write ``latency.png`` and ``size.png`` under ``out_dir/sub``; return their paths relative to
    ``out_dir``. Without matplotlib (the runtime-only install) the charts are skipped, and said so."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("charts skipped: matplotlib is not installed (pip install 'pofa-openvino[compress]')")
        return {}
    (out_dir / sub).mkdir(parents=True, exist_ok=True)
    variants = result["variants"]
    title = f"{result['machine']['cpu']}, {result['machine']['cores_used']} threads, batch " \
            f"{result['settings']['batch_size']}"
    charts = {"latency": f"{sub}/latency.png", "size": f"{sub}/size.png"}

    lengths = result["settings"]["sequence_lengths"]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(variants)
    for i, figures in enumerate(variants.values()):
        measured = [str(n) for n in lengths if str(n) in figures["latency_ms"]]
        positions = [lengths.index(int(n)) + (i - (len(variants) - 1) / 2) * width for n in measured]
        medians = [figures["latency_ms"][n]["median_ms"] for n in measured]
        spread = [figures["latency_ms"][n]["p90_ms"] - figures["latency_ms"][n]["median_ms"] for n in measured]
        axes.bar(positions, medians, width, yerr=[[0] * len(spread), spread], capsize=2, label=figures["label"])
    axes.set_xticks(range(len(lengths)), [f"{n} tokens" for n in lengths])
    axes.set_ylabel("latency, ms (median; whisker to p90)")
    axes.set_title(f"Latency by variant\n{title}", fontsize=9)
    axes.legend(fontsize=8)
    _save(figure, out_dir / charts["latency"])

    figure, axes = plt.subplots(figsize=(8, 0.6 * len(variants) + 1.2))
    names = list(variants)
    sizes = [variants[name]["size_bytes"] / 1e6 for name in names]
    axes.barh([variants[name]["label"] for name in names], sizes)
    for y, size in enumerate(sizes):
        axes.annotate(f"{size:.1f} MB", (size, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
    axes.set_xlabel("model size on disk, MB (weights and graph)")
    axes.invert_yaxis()
    axes.set_title("Size by variant", fontsize=9)
    _save(figure, out_dir / charts["size"])
    return charts


def _save(figure: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
