"""Chart: the sparsity schedules (INC's exp, cos, cube, linear and our zhu_gupta) and the learning-rate
schedules (linear, linear_after_pruning) of one run, drawn from the code that runs them: INC's iterative
scheduler and ours (pofa_openvino.prune), and pofa_openvino.train.learning_rate_schedule.

    .venv/bin/python benchmarks/schedule_shapes.py      # a second; writes benchmarks/results/schedule_shapes.png

The run is the one issue 19 describes: 1405 optimizer steps, pruning to 90% from step 0 to end_step 800,
a mask update every 10 steps.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

OUT = Path(__file__).resolve().parent / "results" / "schedule_shapes.png"
STEPS, END_STEP, FREQUENCY, TARGET = 1405, 800, 10, 0.9
SHAPES = ("zhu_gupta", "exp", "linear", "cos", "cube")


def sparsity_by_step(decay: str) -> list[float]:
    """The target sparsity in force at each step, as INC's pruners ask their scheduler for it."""
    from pofa_openvino.prune import _front_loaded_cubic, _import_inc

    config = SimpleNamespace(sparsity_decay_type=decay, max_sparsity_ratio_per_op=0.98)
    iterative = _import_inc("neural_compressor.compression.pruner.schedulers").IterativeScheduler
    scheduler = (_front_loaded_cubic() if decay == "zhu_gupta" else iterative)(config)
    updates = END_STEP // FREQUENCY  # INC: (end - start + frequency) // frequency - 1
    current, values = 0.0, []
    for step in range(STEPS):
        if step <= END_STEP and step % FREQUENCY == 0:
            current = scheduler.update_sparsity_ratio(TARGET, step // FREQUENCY, updates, None, 0.0)
        values.append(current)
    return values


def rates(kind: str) -> list[float]:
    import torch

    from pofa_openvino.recipe import TrainingSection
    from pofa_openvino.train import learning_rate_schedule

    training = TrainingSection(learning_rate=1.0, warmup_steps=70, lr_scheduler_type=kind)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = learning_rate_schedule(optimizer, training, STEPS, END_STEP)
    values = []
    for _ in range(STEPS):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(3, 2))
    for decay in SHAPES:
        values = sparsity_by_step(decay)
        top.plot(values, label=f"{decay} ({values[END_STEP // 2]:.0%} at half-way)", linewidth=1.6)
    top.axvline(END_STEP, color="grey", linestyle=":", linewidth=1)
    top.set(ylabel="target sparsity", title=f"Pruning to {TARGET:.0%} over steps 0-{END_STEP} of {STEPS}")
    top.legend(fontsize=8, loc="lower right")
    for kind in ("linear", "linear_after_pruning"):
        bottom.plot(rates(kind), label=kind, linewidth=1.6)
    bottom.axvline(END_STEP, color="grey", linestyle=":", linewidth=1)
    bottom.set(xlabel="optimizer step", ylabel="learning rate / peak", title="lr_scheduler_type (warmup 70 steps)")
    bottom.legend(fontsize=8)
    figure.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
