"""Figures regenerated from run records and step logs (``python -m eval.report`` writes them): the
final trade-off per split, the same along unlearning (trajectories), GeN's learning rate, task
gradient norms and cosines, task losses. One mark or curve per series (method, scheduler, variant:
:mod:`eval.report.style` says how they are told apart), the mean over seeds with its standard
error (error bars, or a band along steps) wherever a series has more than one seed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from eval.directions import AXIS_NAMES, axis_label
from eval.records import RECORD_NAME
from eval.report.gen_figure import gen_rates_figure
from eval.report.style import Styles, finish, seeds_phrase
from eval.report.tables import mean_stderr

VARIANTS_KEY = "variants.md"  # the variant key beside the figures


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=120, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


# the final trade-off plotted per benchmark: (x, y, log y); TOFU's is the paper's FQ-vs-MU plane,
# MUSE's its utility (KnowMem on D_r) against what is left of the forget set's knowledge
TRADEOFF = {"tofu": ("model_utility", "forget_quality", True), "muse": ("knowmem_r", "knowmem_f", False),
            "wmdp": ("general_acc", "forget_acc", False)}
# step-log curves: kind -> (axis label, file name, log axis: True | False | "auto" (log when positive
# and spanning more than 30x))
CURVES = {"lr": ("learning rate", "learning_rate", True), "grad_norm": ("task gradient norm", "grad_norms", True),
          "cos": ("cos(g_F, g_R)", "grad_cosine", False), "loss": ("task loss", "losses", "auto")}
TASK_ORDER = {"forget": 0, "retain": 1}


def integer_steps(ax) -> None:
    """Step axes carry whole steps only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _panels(plt, n: int, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 0.6, height), squeeze=False, sharey=True)
    return fig, list(axes[0])


def plotted_runs(df: pd.DataFrame, styles: Styles | None = None) -> tuple[pd.DataFrame, Styles]:
    """The unlearned runs that finished (status ok), each with its series label and look, and the
    report's :class:`Styles` (built from them unless given)."""
    un = df[(df["model_role"] == "unlearned") & (df["status"] == "ok")] if len(df) else df
    if un.empty:
        return un, styles
    un = un.assign(split=un["split"].fillna(""))
    styles = styles or Styles.build(un)
    look = [{"label": styles.label(m, s, v), "color": styles.color(m, v), "linestyle": styles.line(s),
             "marker": styles.marker(s)} for m, s, v in zip(un["method"], un["scheduler"], un["variant_items"])]
    return un.assign(**{k: [x[k] for x in look] for k in look[0]}), styles


def write_figures(df: pd.DataFrame, out: Path, benchmark: str = "tofu", styles: Styles | None = None) -> list[Path]:
    """Trade-off and training-dynamics figures from records and step logs, one panel per forget
    split, and the variant key (``variants.md``) they share (``styles``: the report's, which its
    table's short variant ids come from too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    un, styles = plotted_runs(df, styles)
    if un.empty:
        return []
    written: list[Path] = []
    splits = sorted(un["split"].unique())
    x, y, logy = TRADEOFF.get(benchmark, TRADEOFF["tofu"])
    if {x, y} <= set(un.columns):
        written += _save(tradeoff_figure(plt, df, un, splits, (x, y, logy), styles), out, "tradeoff_final")
    traj, curves = _run_series(un, splits, x, y)
    if any(traj[s] for s in splits):
        written += _save(trajectory_figure(plt, traj, splits, un, y, logy, styles), out, "tradeoff_trajectories")
    for kind, (ylabel, name, log) in CURVES.items():
        if any(curves[kind][s] for s in splits):
            written += _save(curve_figure(plt, curves[kind], splits, un, (ylabel, log), styles), out, name)
    gen = gen_rates_figure(un, styles)  # GeN's rate vs its vertex, per initial rate
    if gen is not None:
        written += _save(gen, out, "gen_rates")
    (out / VARIANTS_KEY).write_text("# Variants in the figures\n\n" + styles.key_markdown())
    return written + [out / VARIANTS_KEY]


def _looks(un: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["label"]: r for r in un[["label", "color", "linestyle", "marker"]].drop_duplicates("label").to_dict("records")}


def _references(ax, df: pd.DataFrame, split: str, x: str, y: str) -> None:
    """The target and retain models: large hollow black marks beneath every method's, named."""
    for role, marker in (("target", "X"), ("retain", "*")):
        ref = df[(df["model_role"] == role) & (df["split"].fillna("") == split)]
        if ref.empty or not {x, y} <= set(ref.columns):
            continue
        px, py = ref[x].mean(), ref[y].mean()
        ax.scatter(px, py, marker=marker, s=320, facecolors="none", edgecolors="k", linewidths=1.3, zorder=1,
                   label=f"{role} model")
        ax.annotate(role, (px, py), xytext=(9, 7), textcoords="offset points", fontsize=7, zorder=1)


def tradeoff_figure(plt, df: pd.DataFrame, un: pd.DataFrame, splits: list[str], axes_spec, styles: Styles):
    """The final trade-off: one mark per series at its mean over seeds, with standard-error bars in
    both directions where it has more than one seed; the reference models beneath."""
    x, y, logy = axes_spec
    looks = _looks(un)
    fig, axes = _panels(plt, len(splits))
    ns = []
    for ax, split in zip(axes, splits):
        _references(ax, df, split, x, y)
        for label, g in un[un["split"] == split].groupby("label", sort=True):
            (mx, sx, _), (my, sy, n) = mean_stderr(g[x]), mean_stderr(g[y])
            st = looks[label]
            ax.errorbar(mx, my, xerr=sx if n > 1 else None, yerr=sy if n > 1 else None, fmt=st["marker"],
                        color=st["color"], mec="k", mew=0.6, ms=7, capsize=2.5, elinewidth=1, zorder=3, label=label)
            ns.append(n)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel(axis_label(x))
        ax.set_title(split or "all")
    axes[0].set_ylabel(axis_label(y, logy))
    finish(fig, axes, f"{AXIS_NAMES.get(y, y)} vs {AXIS_NAMES.get(x, x)} after unlearning: mean ± s.e. over seeds "
                      f"({seeds_phrase(ns)})", styles)
    return fig


def _run_series(un: pd.DataFrame, splits: list[str], x: str, y: str):
    """Per split, every run's trajectory (records) by series label, and its step-log curves by
    (series label, task) for each kind of :data:`CURVES` ('' for a run-wide curve), to be averaged
    over the seeds of a series."""
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
                    curves[kind][r["split"]].setdefault((r["label"], task), []).append(
                        pd.Series(values.to_numpy(dtype=float), index=steps["step"]))
    return traj, curves


def _step_series(steps: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """kind -> task ('' for a run-wide one) -> the step log's column (None where it was not logged)."""
    num = lambda c: pd.to_numeric(steps[c], errors="coerce")  # noqa: E731 - 'inf' / 'nan' strings -> NaN
    return {"lr": {"": num("lr") if "lr" in steps else None},
            "cos": {"": num("cos/forget_retain") if "cos/forget_retain" in steps else None},
            "grad_norm": {c.split("/")[1]: num(c) for c in steps.columns if c.startswith("grad_norm/")},
            "loss": {c.split("/")[1]: num(c) for c in steps.columns if c.startswith("loss/")}}


def _direction_arrows(ax, xs, ys, color) -> None:
    """Arrowheads on the segments at a third and two thirds of a curve: which way it went."""
    n = len(xs)
    for i in sorted({max(0, n // 3 - 1), max(0, 2 * n // 3 - 1)}):
        if i + 1 < n and (xs[i], ys[i]) != (xs[i + 1], ys[i + 1]):
            ax.annotate("", xy=(xs[i + 1], ys[i + 1]), xytext=(xs[i], ys[i]), zorder=4,
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.0, "mutation_scale": 11})


def trajectory_figure(plt, traj, splits: list[str], un: pd.DataFrame, y: str, logy: bool, styles: Styles):
    """The trade-off along unlearning: one curve per series (the mean over seeds at each step, with
    standard-error bars where there are several), from the target's hollow X (step 0 is the target)
    to the scheduler's filled mark (the last step), arrowheads showing the direction."""
    from matplotlib.lines import Line2D

    looks = _looks(un)
    fig, axes = _panels(plt, len(splits))
    ns = []
    for ax, split in zip(axes, splits):
        for label, frames in sorted(traj[split].items()):
            both = pd.concat(frames)
            stats = both.groupby("step").agg(x=("x", "mean"), y=("y", "mean"), sx=("x", "sem"), sy=("y", "sem"),
                                             n=("y", "count"))
            st, n = looks[label], len(frames)
            ax.plot(stats["x"], stats["y"], color=st["color"], linestyle=st["linestyle"], lw=1.3, label=label, zorder=2)
            if n > 1:
                ax.errorbar(stats["x"], stats["y"], xerr=stats["sx"].fillna(0), yerr=stats["sy"].fillna(0), fmt="none",
                            ecolor=st["color"], elinewidth=0.6, alpha=0.45, zorder=2)
            ax.plot(stats["x"].iloc[0], stats["y"].iloc[0], "X", mfc="none", mec="k", ms=13, mew=1.2, zorder=1)
            ax.plot(stats["x"].iloc[-1], stats["y"].iloc[-1], st["marker"], color=st["color"], mec="k", ms=7, zorder=5)
            _direction_arrows(ax, list(stats["x"]), list(stats["y"]), st["color"])
            ax.set_xlabel(axis_label(frames[0]["xname"].iloc[0]))
            ns.append(n)
        if logy:
            ax.set_yscale("log")
        ax.set_title(split or "all")
    axes[0].set_ylabel(axis_label(y, logy))
    marks = [(Line2D([], [], marker="X", mfc="none", mec="k", ms=9, linestyle="none"), "start (step 0: the target)"),
             (Line2D([], [], marker="s", color="0.5", mec="k", linestyle="none"), "end (last step; marker: scheduler)")]
    finish(fig, axes, f"{AXIS_NAMES.get(y, y)} vs utility along unlearning: mean ± s.e. over seeds at each "
                      f"evaluated step ({seeds_phrase(ns)})", styles, marks)
    return fig


def _auto_log(values: list[pd.Series]) -> bool:
    v = pd.concat(values).dropna() if values else pd.Series(dtype=float)
    return bool(len(v)) and (v > 0).all() and v.max() / v.min() > 30


def curve_figure(plt, curves, splits: list[str], un: pd.DataFrame, axis: tuple[str, Any], styles: Styles):
    """One kind of step-log curve against the step: a row of panels per task (forget, retain, ...;
    one row for a run-wide curve), a column per split; the mean over seeds, ± its standard error as
    a band where there are several."""
    ylabel, log = axis
    looks = _looks(un)
    tasks = sorted({t for s in splits for _, t in curves[s]}, key=lambda t: (TASK_ORDER.get(t, 2), t))
    fig, axes = plt.subplots(len(tasks), len(splits), figsize=(4.2 * len(splits) + 0.6, 2.7 * len(tasks) + 0.7),
                             squeeze=False, sharex=True, sharey="row")
    ns = []
    for row, task in zip(axes, tasks):
        values = []
        for ax, split in zip(row, splits):
            for (label, t), runs in sorted(curves[split].items()):
                if t != task:
                    continue
                frame = pd.concat(runs, axis=1)
                mean, se = frame.mean(axis=1), frame.sem(axis=1)
                st = looks[label]
                ax.plot(mean.index, mean.to_numpy(), color=st["color"], linestyle=st["linestyle"], lw=1.2, label=label)
                if frame.shape[1] > 1:
                    ax.fill_between(mean.index, (mean - se).to_numpy(), (mean + se).to_numpy(), color=st["color"],
                                    alpha=0.15, lw=0)
                values.append(mean)
                ns.append(frame.shape[1])
            ax.set_title(" - ".join(p for p in (split or "all", f"{task} task" if task else "") if p), fontsize=9)
            integer_steps(ax)
        if log is True or (log == "auto" and _auto_log(values)):
            row[0].set_yscale("log")
        row[0].set_ylabel(ylabel + (f" ({task})" if task else ""))
    for ax in axes[-1]:
        ax.set_xlabel("step")
    band = "; band: ± s.e." if max(ns, default=1) > 1 else ""
    finish(fig, list(axes.flat), f"{ylabel} per step: mean over seeds ({seeds_phrase(ns)}){band}", styles)
    return fig
