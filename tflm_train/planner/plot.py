"""Memory-over-time picture of a MemoryPlan (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from typing import Optional

COLORS = {
    "saved activations": "#4c72b0",
    "working activations": "#8fb0d8",
    "gradients": "#dd8452",
    "trainable parameters": "#55a868",
    "runtime state": "#8c8c8c",
}


def plot_plan(plan, path: str, title: Optional[str] = None) -> str:
    """Two panels: live bytes per category over the steps (stacked, with the arena size),
    and the placement itself (each buffer a rectangle: steps x arena bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .plan import CATEGORIES, _category

    n = len(plan.steps)
    xs = list(range(n))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 8), sharex=True, gridspec_kw=dict(height_ratios=[1, 1.3]))
    stacks = [[row[c] / 1024 for row in plan.timeline] for c in CATEGORIES]
    ax1.stackplot(xs, stacks, labels=CATEGORIES, colors=[COLORS[c] for c in CATEGORIES], step="mid")
    ax1.axhline(plan.arena_bytes / 1024, color="k", lw=1, ls="--", label=f"arena {plan.arena_bytes / 1024:.1f} KB")
    ax1.axhline(plan.peak_bytes / 1024, color="r", lw=1, ls=":",
                label=f"peak incl. runtime {plan.peak_bytes / 1024:.1f} KB")
    ax1.axvline(plan.peak_step, color="r", lw=0.8)
    ax1.set_ylabel("live KB")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(title or f"{getattr(plan.graph, 'name', '')}: reorder {'on' if plan.reorder else 'off'}, "
                           f"peak {plan.peak_bytes / 1024:.1f} KB at {plan.steps[plan.peak_step].name if n else '-'}")

    saved = set()
    for s in plan.steps:
        if s.phase in ("backward", "update"):
            saved.update(s.reads)
    kinds = {t.name: t.kind for t in plan.tensors.values()}
    drawn = set()
    for t in plan.tensors.values():
        if t.offset is None or t.first is None:
            continue
        key = (t.buffer or t.name, t.first)
        if key in drawn:
            continue
        drawn.add(key)
        color = COLORS[_category(plan.graph, kinds, t.name, saved)]
        ax2.add_patch(Rectangle((t.first - 0.45, t.offset / 1024), t.last - t.first + 0.9, t.nbytes / 1024,
                                facecolor=color, edgecolor="k", lw=0.2))
    for k, s in enumerate(plan.steps):
        if s.scratch_bytes and s.scratch_offset is not None:
            ax2.add_patch(Rectangle((k - 0.45, s.scratch_offset / 1024), 0.9, s.scratch_bytes / 1024,
                                    facecolor="#c44e52", edgecolor="k", lw=0.2))
    ax2.axhline(plan.persistent_bytes / 1024, color="g", lw=0.8, ls=":")
    ax2.set_xlim(-1, max(n, 1))
    ax2.set_ylim(0, max(plan.arena_bytes, 1) / 1024 * 1.02)
    ax2.set_xlabel("step (planned operator order)")
    ax2.set_ylabel("arena offset (KB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
