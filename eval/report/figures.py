"""Figures regenerated from run records and step logs (``python -m eval.report`` writes them):
the final trade-off per split, the same along unlearning (trajectories), GeN's learning rate, task
gradient norms and cosines, task losses -- one mark or curve per method+scheduler(+variant), the
mean over seeds.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from eval.directions import AXIS_NAMES, axis_label
from eval.report.gen_figure import gen_rates_figure
from eval.report.sweeps import variant_items
from eval.records import RECORD_NAME


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=120, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _label(r: Mapping[str, Any], common: Mapping[str, str] | None = None) -> str:
    """``method+scheduler (overrides)``, leaving out the overrides every plotted run shares (an
    evaluated checkpoint has no scheduler: its label alone)."""
    items = {k: v for k, v in variant_items(r.get("variant")).items() if (common or {}).get(k) != v}
    name = "+".join(str(p) for p in (r["method"], r["scheduler"]) if pd.notna(p) and p != "")
    return name + (f" ({','.join(f'{k}={v}' for k, v in items.items())})" if items else "")


# the final trade-off plotted per benchmark: (x, y, log y); TOFU's is the paper's FQ-vs-MU plane,
# MUSE's its utility (KnowMem on D_r) against what is left of the forget set's knowledge
TRADEOFF = {"tofu": ("model_utility", "forget_quality", True), "muse": ("knowmem_r", "knowmem_f", False)}
CURVES = {"lr": ("learning rate", "learning_rate", True), "grad_norm": ("task gradient norm", "grad_norms", True),
          "cos": ("cos(g_F, g_R)", "grad_cosine", False), "loss": ("task loss", "losses", False)}


def distinct_colors(n: int) -> list[Any]:
    """n colors no two of which are shades of one hue while n <= 26 (tab10, then Dark2, then Set1;
    tab20's pairs are light and dark shades of one hue)."""
    import matplotlib

    base = [matplotlib.colormaps[name](i) for name, k in (("tab10", 10), ("Dark2", 8), ("Set1", 8)) for i in range(k)]
    return [base[i % len(base)] for i in range(n)]


def integer_steps(ax) -> None:
    """Step axes carry whole steps only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _panels(plt, n: int, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 2.2, height), squeeze=False, sharey=True)
    return fig, list(axes[0])


def _finish(fig, axes, title: str, common: Mapping[str, str] | None = None) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # every label once, even one that only a later panel has
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(title + (f"\n({', '.join(f'{k}={v}' for k, v in common.items())})" if common else ""), fontsize=10)
    fig.tight_layout()


def _style(un: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """label -> plot style: one distinct color per method+overrides, the marker and line style by
    scheduler (GeN dashed)."""
    keys = sorted(un["color_key"].unique())
    color = dict(zip(keys, distinct_colors(len(keys))))
    return {r.label: {"color": color[r.color_key], "marker": "s" if r.scheduler == "gen" else "o",
                      "linestyle": "--" if r.scheduler == "gen" else "-"}
            for r in un[["label", "color_key", "scheduler"]].drop_duplicates().itertuples()}


def write_figures(df: pd.DataFrame, out: Path, benchmark: str = "tofu") -> list[Path]:
    """Trade-off and training-dynamics figures from records and step logs: one panel per forget
    split, one point or curve per method+scheduler(+variant), averaged over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    un = df[(df["model_role"] == "unlearned") & (df["status"] == "ok")] if len(df) else df
    if un.empty:
        return written
    un, common = _labelled(un)
    splits = sorted(un["split"].unique())
    style = _style(un)
    x, y, logy = TRADEOFF.get(benchmark, TRADEOFF["tofu"])
    if {x, y} <= set(un.columns):
        fig = _final_figure(plt, df, un, splits, style, (x, y, logy), common)
        written += _save(fig, out, "tradeoff_final")
    traj, curves = _run_series(un, splits, x, y)
    if any(traj[s] for s in splits):
        written += _save(_trajectory_figure(plt, traj, splits, style, y, logy, common), out, "tradeoff_trajectories")
    for kind, (ylabel, name, log) in CURVES.items():
        if any(curves[kind][s] for s in splits):
            written += _save(_curve_figure(plt, curves[kind], splits, style, ylabel, log, common), out, name)
    gen = gen_rates_figure(un, variant_items)  # GeN's rate vs its vertex, per initial rate
    if gen is not None:
        written += _save(gen, out, "gen_rates")
    return written


def _labelled(un: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The unlearned runs with their plot label and color key (the overrides every run shares left
    out, returned apart for the title), and the split of a run without one as ''."""
    variants = [variant_items(v) for v in un["variant"]]
    common = {k: v for k, v in variants[0].items() if all(d.get(k) == v for d in variants)}
    un = un.assign(label=un.apply(lambda r: _label(r, common), axis=1),
                   color_key=un.apply(lambda r: _label({**r, "scheduler": ""}, common), axis=1),
                   split=un["split"].fillna(""))
    return un, common


def _final_figure(plt, df: pd.DataFrame, un: pd.DataFrame, splits: list[str], style, axes_spec, common):
    """The final trade-off: one mark per label (mean over seeds), the target and retain models as
    hollow reference marks."""
    x, y, logy = axes_spec
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        part = un[un["split"] == split]
        for label, g in part.groupby("label", sort=True):
            st = style[label]
            ax.scatter(g[x].mean(), g[y].mean(), label=label, color=st["color"], marker=st["marker"],
                       zorder=3, edgecolors="white", linewidths=0.5)
        for role, marker in (("target", "X"), ("retain", "*")):  # hollow, beneath: never hiding a method
            ref = df[(df["model_role"] == role) & (df["split"].fillna("") == split)]
            if not ref.empty and {x, y} <= set(ref.columns):
                ax.scatter(ref[x].mean(), ref[y].mean(), marker=marker, s=140, facecolors="none",
                           edgecolors="k", linewidths=1.0, zorder=2, label=role)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(axis_label(x))
        ax.set_title(split or "all")
    axes[0].set_ylabel(axis_label(y, logy))
    _finish(fig, axes, f"{AXIS_NAMES.get(y, y)} vs {AXIS_NAMES.get(x, x)} after unlearning (mean over seeds)", common)
    return fig


def _run_series(un: pd.DataFrame, splits: list[str], x: str, y: str):
    """Per split and label, every run's trajectory (records) and step-log curves (one series per
    kind of :data:`CURVES` and task), to be averaged over the seeds of a label."""
    traj = {s: {} for s in splits}
    curves = {k: {s: {} for s in splits} for k in CURVES}
    for _, r in un.drop_duplicates("run_dir").iterrows():
        run_dir = Path(r["run_dir"])
        rec = json.loads((run_dir / RECORD_NAME).read_text())
        points = rec.get("trajectory") or []
        ux = next((k for k in (x, "model_utility_no_rouge") if points and k in points[0]), None)
        if points and ux and y in points[0]:
            frame = pd.DataFrame([{"step": p.get("step", i), "x": p[ux], "y": p[y]} for i, p in enumerate(points)])
            traj[r["split"]].setdefault(r["label"], []).append(frame.assign(xname=ux))
        steps_path = run_dir / rec.get("logs", {}).get("steps", "steps.jsonl")
        if not steps_path.exists():
            continue
        steps = pd.read_json(steps_path, lines=True)
        for kind, named in _step_series(steps).items():
            for task, values in named.items():
                if values is not None:
                    key = r["label"] + (f" [{task}]" if task else "")
                    curves[kind][r["split"]].setdefault(key, []).append(pd.Series(values.to_numpy(), index=steps["step"]))
    return traj, curves


def _step_series(steps: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """kind -> task ('' for a run-wide one) -> the step log's column (None where it was not logged)."""
    return {"lr": {"": steps.get("lr")}, "cos": {"": steps.get("cos/forget_retain")},
            "grad_norm": {c.split("/")[1]: steps[c] for c in steps.columns if c.startswith("grad_norm/")},
            "loss": {c.split("/")[1]: pd.to_numeric(steps[c], errors="coerce")
                     for c in steps.columns if c.startswith("loss/")}}


def _trajectory_figure(plt, traj, splits: list[str], style, y: str, logy: bool, common):
    """The trade-off along unlearning: one curve per label, the mean over seeds at each step."""
    fig, axes = _panels(plt, len(splits))
    for ax, split in zip(axes, splits):
        for label, frames in sorted(traj[split].items()):
            mean = pd.concat(frames).groupby("step")[["x", "y"]].mean()
            st = style[label]
            ax.plot(mean["x"], mean["y"], marker=".", color=st["color"], linestyle=st["linestyle"], label=label)
            ax.set_xlabel(axis_label(frames[0]["xname"].iloc[0]))
        if logy:
            ax.set_yscale("log")
        ax.set_title(split or "all")
    axes[0].set_ylabel(axis_label(y, logy))
    _finish(fig, axes, f"{AXIS_NAMES.get(y, y)} vs utility over unlearning steps (mean over seeds)", common)
    return fig


def _curve_figure(plt, curves, splits: list[str], style, ylabel: str, log: bool, common):
    """One kind of step-log curve (learning rate, gradient norms, ...) against the step, the forget
    task's dotted."""
    fig, axes = _panels(plt, len(splits), height=3.2)
    for ax, split in zip(axes, splits):
        for key, runs in sorted(curves[split].items()):
            mean = pd.concat(runs, axis=1).mean(axis=1)
            st = style[key.split(" [")[0]]
            task_style = ":" if key.endswith("[forget]") else st["linestyle"]
            ax.plot(mean.index, mean.to_numpy(), color=st["color"], linestyle=task_style, label=key)
        ax.set_xlabel("step")
        integer_steps(ax)
        ax.set_title(split or "all")
        if log:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel)
    _finish(fig, axes, f"{ylabel} (mean over seeds)", common)
    return fig
