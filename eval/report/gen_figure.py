"""GeN's rate against its own vertex, over steps, per initial rate (issue 13's observability).

For every unlearned run whose step log has GeN probes: the rate the step used (``lr``) and the raw
vertex ``b / a`` each probe fitted (``gen/vertex``, before any clip; only where the fit had
positive curvature and descent, i.e. where a vertex exists). One panel per split and method + GeN
variant (its overrides without ``method.lr``), one color per initial rate, means over seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eval.records import RECORD_NAME

LR_KEYS = ("method.lr", "lr")


def _panel_key(r: pd.Series, variant_items) -> str:
    items = {k: v for k, v in variant_items(r["variant"]).items() if k not in LR_KEYS}
    extra = ",".join(f"{k}={v}" for k, v in sorted(items.items()))
    return f"{r['split'] or 'all'}: {r['method']}+{r['scheduler']}" + (f" ({extra})" if extra else "")


def gen_rate_series(un: pd.DataFrame, variant_items) -> dict[str, dict[float, dict[str, pd.Series]]]:
    """panel -> initial rate -> {"lr": mean rate used per step, "vertex": mean positive vertex per
    probe step} over the seeds of that cell."""
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
        cell = raw.setdefault(_panel_key(r, variant_items), {}).setdefault(float(r["lr"]), {"lr": [], "vertex": []})
        cell["lr"].append(pd.Series(steps["lr"].to_numpy(), index=steps["step"]))
        cell["vertex"].append(pd.Series(vertex[ok].to_numpy(), index=steps["step"][ok]))
    return {panel: {lr: {k: pd.concat(v, axis=1).mean(axis=1) for k, v in cell.items()}
                    for lr, cell in sorted(cells.items())}
            for panel, cells in sorted(raw.items())}


def gen_rates_figure(un: pd.DataFrame, variant_items):
    """The figure (None when no run has GeN probes); :func:`eval.report.figures.write_figures` saves it as
    ``gen_rates.{png,pdf}``."""
    series = gen_rate_series(un, variant_items)
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols + 2.2, 3.2 * rows + 0.6), squeeze=False, sharey=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    cmap = matplotlib.colormaps["viridis"]
    rates = sorted({lr for cells in series.values() for lr in cells})
    color = {lr: cmap(i / max(1, len(rates) - 1)) for i, lr in enumerate(rates)}
    for ax, (panel, cells) in zip(axes.flat, series.items()):
        for lr, s in cells.items():
            ax.plot(s["lr"].index, s["lr"].to_numpy(), color=color[lr], label=f"rate used (start {lr:g})")
            if len(s["vertex"]):
                ax.scatter(s["vertex"].index, s["vertex"].to_numpy(), color=color[lr], marker="x", s=18,
                           label=f"vertex b/a (start {lr:g})")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(panel, fontsize=9)
    for row in axes:
        row[0].set_ylabel("learning rate (log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=7)
    fig.suptitle("GeN: the rate used and the fitted vertex, per initial rate (mean over seeds)")
    fig.tight_layout(rect=(0, 0, 0.8, 0.95))
    return fig


__all__: list[Any] = ["gen_rate_series", "gen_rates_figure"]
