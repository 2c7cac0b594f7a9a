"""GeN's rate against its own vertex, over steps, per initial rate (issue 13's observability).

For every unlearned run whose step log has GeN probes: the rate the step used (``lr``) and the raw
vertex ``b / a`` each probe fitted (``gen/vertex``, before any clip; only where the fit had
positive curvature and descent, i.e. where a vertex exists). One panel per split and method + GeN
variant (its overrides without ``method.lr``, titled by its short id: :class:`eval.report.style.Styles`),
one color per initial rate, the scheduler's line style (as in every figure), means over seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eval.records import RECORD_NAME

LR_KEYS = ("method.lr", "lr")


def _panel_key(r: pd.Series, styles) -> tuple[str, str]:
    """(panel title, scheduler): the split and the series label of the run's variant less its rate."""
    items = tuple((k, v) for k, v in r["variant_items"] if k not in LR_KEYS)
    return f"{r['split'] or 'all'}: {styles.label(r['method'], r['scheduler'], items)}", r["scheduler"]


def gen_rate_series(un: pd.DataFrame, styles) -> dict[tuple[str, str], dict[float, dict[str, pd.Series]]]:
    """(panel title, scheduler) -> initial rate -> {"lr": mean rate used per step, "vertex": mean
    positive vertex per probe step} over the seeds of that cell."""
    raw: dict[str, dict[float, dict[str, list[pd.Series]]]] = {}
    for _, r in un.drop_duplicates("run_dir").iterrows():
        run_dir = Path(r["run_dir"])
        rec = json.loads((run_dir / RECORD_NAME).read_text())
        path = run_dir / rec.get("logs", {}).get("steps", "steps.jsonl")
        if not path.exists():
            continue
        steps = pd.read_json(path, lines=True)
        if "gen/vertex" not in steps or r.get("lr") is None:
            continue
        vertex = pd.to_numeric(steps["gen/vertex"], errors="coerce")
        ok = vertex > 0
        cell = raw.setdefault(_panel_key(r, styles), {}).setdefault(float(r["lr"]), {"lr": [], "vertex": []})
        cell["lr"].append(pd.Series(steps["lr"].to_numpy(), index=steps["step"]))
        cell["vertex"].append(pd.Series(vertex[ok].to_numpy(), index=steps["step"][ok]))
    return {panel: {lr: {k: pd.concat(v, axis=1).mean(axis=1) for k, v in cell.items()}
                    for lr, cell in sorted(cells.items())}
            for panel, cells in sorted(raw.items())}


def gen_rates_figure(un: pd.DataFrame, styles):
    """The figure (None when no run has GeN probes); :func:`eval.report.figures.write_figures` saves it as
    ``gen_rates.{png,pdf}``."""
    series = gen_rate_series(un, styles)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from eval.report.style import finish

    n = len(series)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.6, 3.0 * rows + 0.6), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    cmap = matplotlib.colormaps["viridis"]
    rates = sorted({lr for cells in series.values() for lr in cells})
    color = {lr: cmap(0.85 * i / max(1, len(rates) - 1)) for i, lr in enumerate(rates)}
    for ax, ((panel, scheduler), cells) in zip(axes.flat, series.items()):
        for lr, s in cells.items():
            ax.axhline(lr, color=color[lr], lw=0.7, alpha=0.5)  # where it started: how far GeN took it
            ax.plot(s["lr"].index, s["lr"].to_numpy(), color=color[lr], linestyle=styles.line(scheduler),
                    label=f"start {lr:g}")
            if len(s["vertex"]):
                ax.scatter(s["vertex"].index, s["vertex"].to_numpy(), color=color[lr], marker="x", s=18)
        ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step")
    for row in axes:
        row[0].set_ylabel("learning rate (log)")
    marks = [(Line2D([], [], color="0.3", linestyle=styles.line("gen")), "rate used (line style: scheduler)"),
             (Line2D([], [], color="0.3", lw=0.7, alpha=0.5), "initial rate"),
             (Line2D([], [], color="0.3", marker="x", linestyle="none"), "fitted vertex b/a (probe steps)")]
    finish(fig, list(axes.flat[:n]), "GeN: the rate used and the fitted vertex, per initial rate (color); "
                                     "mean over seeds", styles, marks)
    return fig


__all__: list[Any] = ["gen_rate_series", "gen_rates_figure"]
