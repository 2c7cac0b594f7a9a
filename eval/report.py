"""Tables and figures regenerated from run records alone.

    python -m eval.report [RUNS_DIR] [--sweep NAME] [--out DIR]

reads every ``record.json`` under ``RUNS_DIR`` (default ``outputs/runs``; with ``--sweep`` only the
runs that sweep's grid selects), builds one pandas DataFrame (one row per run), and writes into
``--out`` (default ``outputs/reports/<sweep or all>``):

* ``table.{md,tex,csv}`` -- the paper's layout: one row per (method, scheduler, non-grid override),
  one column group per forget split, mean ± stderr over seeds, an arrow for each metric's better
  direction, the best value of each column in bold; the target and retain models as reference rows;
  failed, diverged or missing runs shown as such, never as zeros;
* figures (PNG and PDF): forget quality vs model utility along unlearning (trajectories), the final
  trade-off per method, GeN's learning rate, task gradient norms and cosines, forget/retain losses.

Nothing in a table is typed by hand: deleting ``outputs/reports`` and re-running this command gives
identical tables.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from eval.records import RECORD_NAME, RECORD_VERSION, load_record

# metric -> better direction: "max", "min" or "zero" (closest to 0 is best, e.g. PrivLeak)
DIRECTION = {
    "forget_quality": "max", "model_utility": "max", "forget_truth_ratio": "max", "forget_rouge": "min",
    "forget_prob": "min", "retain_prob": "max", "retain_rouge": "max", "retain_truth_ratio": "max",
    "forget_exact_memorization": "min", "forget_extraction_strength": "min",
    "verbmem_f": "min", "knowmem_f": "min", "knowmem_r": "max", "privleak": "zero",
}
ARROW = {"max": "↑", "min": "↓", "zero": "→0"}
DEFAULT_METRICS = {"tofu": ["forget_quality", "model_utility", "forget_rouge", "retain_rouge"],
                   "muse": ["verbmem_f", "knowmem_f", "knowmem_r", "privleak"]}
ID_COLUMNS = ["benchmark", "dataset", "split", "model", "method", "scheduler", "variant", "seed"]


# ------------------------------------------------------------------------------------------------
# records -> DataFrame
# ------------------------------------------------------------------------------------------------
def find_records(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob(RECORD_NAME))


def _variant(run_dir: Path, cfg: Mapping[str, Any]) -> str:
    """The non-group overrides of a run, i.e. the directory between method-scheduler and seedN."""
    parts = run_dir.parts
    return parts[-2] if len(parts) >= 2 and parts[-1].startswith("seed") else "default"


def record_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of one record: the unlearned model, plus the target and retain models as references."""
    try:
        rec = load_record(path)
    except ValueError as e:  # a malformed record is reported, not silently dropped or zeroed
        return [{"run_dir": str(path.parent), "status": "malformed", "error": str(e), "model_role": "unlearned"}]
    if rec.get("record_version") != RECORD_VERSION:
        return [{"run_dir": str(path.parent), "status": f"record_version {rec.get('record_version')}",
                 "model_role": "unlearned", "error": f"written by another version (this code reads {RECORD_VERSION})"}]
    cfg = rec.get("config", {})
    base = {
        "run_dir": str(path.parent), "status": rec["status"],
        "benchmark": cfg.get("dataset", {}).get("benchmark"), "dataset": cfg.get("dataset", {}).get("name"),
        "split": cfg.get("dataset", {}).get("split"), "model": cfg.get("model", {}).get("name"),
        "method": cfg.get("method", {}).get("name"), "scheduler": cfg.get("scheduler", {}).get("name"),
        "lr": cfg.get("method", {}).get("lr"), "variant": _variant(path.parent, cfg), "seed": rec.get("seed"),
        "steps": (rec.get("unlearn") or {}).get("steps"), "seconds": (rec.get("timings") or {}).get("total"),
    }
    rows = []
    metrics = rec.get("metrics") or {}
    for role in ("unlearned", "target", "retain"):
        row = {**base, "model_role": role}
        m = metrics.get(role)
        if m:
            row.update({k: v for k, v in m["summary"].items() if isinstance(v, (int, float)) or v is None})
        elif role != "unlearned":
            continue
        rows.append(row)
    return rows


def load_runs(root: str | Path, records: Iterable[Path] | None = None) -> pd.DataFrame:
    paths = list(records) if records is not None else find_records(root)
    rows = [r for p in paths for r in record_rows(p)]
    df = pd.DataFrame(rows)
    for col in ["run_dir", "status", "model_role", *ID_COLUMNS]:  # present even if no record has them
        if col not in df:
            df[col] = None
    return df


# ------------------------------------------------------------------------------------------------
# aggregation
# ------------------------------------------------------------------------------------------------
def mean_stderr(values: pd.Series) -> tuple[float, float, int]:
    """Mean and standard error (sample std / sqrt(n); 0 for one seed or equal values: the rounding
    of their mean would otherwise show as a spurious 1e-17) of the finite values."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) == 0:
        return math.nan, math.nan, 0
    se = float(np.std(v, ddof=1) / math.sqrt(len(v))) if len(v) > 1 and np.ptp(v) > 0 else 0.0
    return float(v.mean()), se, len(v)


def aggregate(df: pd.DataFrame, metrics: list[str], rows: list[str] = ("method", "scheduler", "variant"),
              columns: str | None = "split") -> pd.DataFrame:
    """One line per (rows) group: per metric (and split) mean, stderr, seeds ok, and failures.

    Only ``ok`` runs enter the mean; a group's ``status`` says how many runs failed or diverged.
    """
    rows = list(rows)
    un = df[df["model_role"] == "unlearned"] if "model_role" in df else df
    keys = rows + ([columns] if columns else [])
    out = []
    for key, g in un.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        ok = g[g["status"] == "ok"]
        line = dict(zip(keys, key))
        bad = g["status"][g["status"] != "ok"].value_counts().to_dict()
        line["status"] = "ok" if not bad else ", ".join(f"{n} {s}" for s, n in sorted(bad.items()))
        line["n_ok"] = len(ok)
        for m in metrics:
            mean, se, n = mean_stderr(ok[m]) if m in ok else (math.nan, math.nan, 0)
            line[f"{m}_mean"], line[f"{m}_stderr"] = mean, se
        out.append(line)
    return pd.DataFrame(out)


def reference_rows(df: pd.DataFrame, metrics: list[str], columns: str | None = "split") -> pd.DataFrame:
    """The target and retain models (the same for every run of a split): one line each."""
    ref = df[df["model_role"].isin(["target", "retain"])] if "model_role" in df else df.iloc[0:0]
    out = []
    keys = ["model_role"] + ([columns] if columns else [])
    for key, g in ref.groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = {"method": f"({key[0]})", "scheduler": "", "variant": "", "status": "reference", "n_ok": len(g)}
        if columns:
            line[columns] = key[1]
        for m in metrics:
            line[f"{m}_mean"], line[f"{m}_stderr"], _ = mean_stderr(g[m]) if m in g else (math.nan, math.nan, 0)
        out.append(line)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _fmt(mean: float, se: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    digits = lambda x: f"{x:.3g}" if (abs(x) < 1e-3 and x != 0) or abs(x) >= 1e4 else f"{x:.3f}"  # noqa: E731
    return digits(mean) + (f" ± {digits(se)}" if se and not math.isnan(se) and se > 0 else "")


def _best(values: pd.Series, direction: str) -> Any:
    v = pd.to_numeric(values, errors="coerce")
    if v.notna().sum() == 0:
        return None
    if direction == "max":
        return v.idxmax()
    if direction == "min":
        return v.idxmin()
    return v.abs().idxmin()


def paper_table(agg: pd.DataFrame, refs: pd.DataFrame, metrics: list[str], columns: str | None = "split",
                rows: list[str] = ("method", "scheduler", "variant")) -> pd.DataFrame:
    """The displayed table: cells 'mean ± stderr', best per column marked with **…**, failures named."""
    rows = list(rows)
    splits = sorted(agg[columns].dropna().unique()) if columns and columns in agg else [None]
    body = []
    for key, g in agg.groupby(rows, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        line = {r: ("" if (isinstance(v, float) and math.isnan(v)) else v) for r, v in zip(rows, key)}
        for s in splits:
            cell = g[g[columns] == s] if s is not None else g
            for m in metrics:
                col = f"{m} {ARROW[DIRECTION.get(m, 'max')]}" + (f" [{s}]" if s is not None else "")
                if cell.empty:
                    line[col] = "missing"
                elif cell.iloc[0]["n_ok"] == 0:
                    line[col] = cell.iloc[0]["status"]  # e.g. "3 failed", never a zero
                else:
                    line[col] = (cell.iloc[0][f"{m}_mean"], cell.iloc[0][f"{m}_stderr"])
        body.append(line)
    table = pd.DataFrame(body)
    # mark the best method per column (reference rows excluded)
    for col in [c for c in table.columns if c not in rows]:
        metric = col.split(" ")[0]
        means = table[col].map(lambda x: x[0] if isinstance(x, tuple) else np.nan)
        best = _best(means, DIRECTION.get(metric, "max"))
        table[col] = [("**" + _fmt(*x) + "**" if i == best else _fmt(*x)) if isinstance(x, tuple) else x
                      for i, x in zip(table.index, table[col])]
    ref_lines = []
    for _, r in refs.iterrows():
        line = {k: "" for k in rows} | {"method": r["method"]}
        for s in splits:
            if columns and r.get(columns) != s:
                continue
            for m in metrics:
                col = f"{m} {ARROW[DIRECTION.get(m, 'max')]}" + (f" [{s}]" if s is not None else "")
                line[col] = _fmt(r[f"{m}_mean"], r[f"{m}_stderr"])
        ref_lines.append(line)
    if ref_lines:
        refs_df = pd.DataFrame(ref_lines).groupby("method", sort=True).first().reset_index()
        table = pd.concat([refs_df, table], ignore_index=True)
    table = table[rows + [c for c in table.columns if c not in rows]]
    return table.astype(object).where(table.notna(), "")


def write_tables(table: pd.DataFrame, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.md", out / "table.tex", out / "table.csv"]
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    paths[0].write_text(header + "\n".join(lines) + "\n")
    tex = table.map(lambda v: _latex_cell(str(v)))
    tex.columns = [_latex_cell(c) for c in table.columns]
    paths[1].write_text(tex.to_latex(index=False, escape=False))
    table.to_csv(paths[2], index=False)
    return paths


def _latex_cell(s: str) -> str:
    s = s.replace("_", r"\_").replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
    s = s.replace("→0", r"$\to 0$")
    if s.startswith("**") and s.endswith("**"):
        s = r"\textbf{" + s[2:-2] + "}"
    return s


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=120, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _label(r: Mapping[str, Any]) -> str:
    v = r.get("variant")
    return f"{r['method']}+{r['scheduler']}" + ("" if v in (None, "", "default") else f" ({v})")


def write_figures(df: pd.DataFrame, out: Path, utility: str = "model_utility") -> list[Path]:
    """Trade-off and training-dynamics figures from records and step logs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    un = df[(df["model_role"] == "unlearned") & (df["status"] == "ok")] if len(df) else df
    if un.empty:
        return written
    # final FQ vs MU per method (mean over seeds), with the target and retain models
    if {"forget_quality", utility} <= set(un.columns):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for label, g in un.groupby(un.apply(_label, axis=1), sort=True):
            ax.scatter(g[utility].mean(), g["forget_quality"].mean(), label=label)
        for role, marker in (("target", "x"), ("retain", "*")):
            ref = df[df["model_role"] == role]
            if not ref.empty and utility in ref:
                ax.scatter(ref[utility].mean(), ref["forget_quality"].mean(), marker=marker, c="k", label=role)
        ax.set_yscale("log")
        ax.set_xlabel(f"{utility} ↑")
        ax.set_ylabel("forget quality ↑ (log)")
        ax.legend(fontsize=7, loc="best")
        ax.set_title("Forget quality vs model utility (final)")
        written += _save(fig, out, "tradeoff_final")
    # trajectories and step-log curves
    traj_fig, traj_ax = plt.subplots(figsize=(5.5, 4))
    curves = {k: plt.subplots(figsize=(5.5, 3.5)) for k in ("lr", "grad_norm", "cos", "loss")}
    any_traj = False
    for _, r in un.drop_duplicates("run_dir").iterrows():
        run_dir = Path(r["run_dir"])
        rec = json.loads((run_dir / RECORD_NAME).read_text())
        traj = rec.get("trajectory") or []
        mu_key = next((k for k in (utility, "model_utility_no_rouge") if traj and k in traj[0]), None)
        if traj and mu_key and "forget_quality" in traj[0]:
            any_traj = True
            traj_ax.plot([t[mu_key] for t in traj], [t["forget_quality"] for t in traj], marker=".",
                         label=f"{_label(r)} s{r['seed']}")
            traj_ax.set_xlabel(f"{mu_key} ↑")
        steps_path = run_dir / rec.get("logs", {}).get("steps", "steps.jsonl")
        if not steps_path.exists():
            continue
        steps = pd.read_json(steps_path, lines=True)
        lab = f"{_label(r)} s{r['seed']}"
        curves["lr"][1].plot(steps["step"], steps["lr"], label=lab)
        for col in [c for c in steps.columns if c.startswith("grad_norm/")]:
            curves["grad_norm"][1].plot(steps["step"], steps[col], label=f"{lab} {col.split('/')[1]}")
        if "cos/forget_retain" in steps:
            curves["cos"][1].plot(steps["step"], steps["cos/forget_retain"], label=lab)
        for col in [c for c in steps.columns if c.startswith("loss/")]:
            curves["loss"][1].plot(steps["step"], pd.to_numeric(steps[col], errors="coerce"),
                                   label=f"{lab} {col.split('/')[1]}")
    if any_traj:
        traj_ax.set_yscale("log")
        traj_ax.set_ylabel("forget quality ↑ (log)")
        traj_ax.set_title("Forget quality vs model utility over unlearning steps")
        traj_ax.legend(fontsize=6)
        written += _save(traj_fig, out, "tradeoff_trajectories")
    else:
        plt.close(traj_fig)
    titles = {"lr": ("learning rate", "learning_rate"), "grad_norm": ("task gradient norm", "grad_norms"),
              "cos": ("cos(g_F, g_R)", "grad_cosine"), "loss": ("task loss", "losses")}
    for key, (fig, ax) in curves.items():
        if not ax.lines:
            plt.close(fig)
            continue
        ax.set_xlabel("step")
        ax.set_ylabel(titles[key][0])
        if key in ("lr", "grad_norm"):
            ax.set_yscale("log")
        ax.legend(fontsize=6)
        written += _save(fig, out, titles[key][1])
    return written


# ------------------------------------------------------------------------------------------------
# sweeps and the command line
# ------------------------------------------------------------------------------------------------
def sweep_spec(name: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from unlearn.config import ROOT

    path = ROOT / "sweeps" / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
        raise FileNotFoundError(f"unknown sweep {name!r}; valid: {', '.join(valid)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def variant_keys_excluded() -> set[str]:
    """The overrides that never name the variant directory (conf/config.yaml's override_dirname)."""
    from omegaconf import OmegaConf

    from unlearn.config import CONFIG_DIR

    conf = OmegaConf.load(CONFIG_DIR / "config.yaml")
    return set(OmegaConf.select(conf, "hydra.job.config.override_dirname.exclude_keys") or [])


def variant_items(variant: Any) -> dict[str, str]:
    """``'method.lr=0.001,eval.x=2'`` -> ``{'method.lr': '0.001', 'eval.x': '2'}`` (Hydra's
    override_dirname: ``key=value`` items joined by commas; 'default' -> {})."""
    if variant in (None, "", "default") or (isinstance(variant, float) and math.isnan(variant)):
        return {}
    items: dict[str, str] = {}
    last = None
    for piece in str(variant).split(","):
        if "=" in piece:
            last, value = piece.split("=", 1)
            items[last] = value
        elif last is not None:  # a comma inside a value (a list)
            items[last] += "," + piece
    return items


def _matches(row: Mapping[str, Any], params: Mapping[str, Any], excluded: set[str] = frozenset()) -> bool:
    """Does a run (its DataFrame row) belong to a sweep grid? Its group/split/seed choices must be in
    the grid, and its variant directory must hold exactly the grid's other keys, with values in the
    grid (a run of another sweep over the same methods, e.g. ``method.lr=1e-3``, does not belong)."""
    key_of = {"method": "method", "scheduler": "scheduler", "dataset": "dataset", "dataset.split": "split",
              "seed": "seed", "model": "model"}
    variant = variant_items(row.get("variant"))
    swept = {k: v for k, v in params.items() if k not in key_of and k not in excluded}
    if set(variant) != set(swept):
        return False
    for k, v in params.items():
        if k in excluded and k not in key_of:
            continue
        allowed = {_canon(s.strip()) for s in str(v).split(",")}
        value = row.get(key_of[k]) if k in key_of else variant[k]
        if _canon(value) not in allowed:
            return False
    return True


def _canon(x: Any) -> str:
    """'1', 1 and 1.0 (a seed column with a missing value becomes float) compare equal."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return str(int(f)) if f.is_integer() else repr(f)


def report(runs: str | Path, out: str | Path, sweep: str | None = None) -> dict[str, Any]:
    df = load_runs(runs)
    spec = sweep_spec(sweep) if sweep else {}
    if sweep and not df.empty:
        excluded = variant_keys_excluded()
        df = df[df.apply(lambda r: _matches(r, spec.get("params", {}), excluded), axis=1)]
    rep = spec.get("report", {})
    bench = rep.get("benchmark") or (df["benchmark"].dropna().iloc[0] if "benchmark" in df and df["benchmark"].notna().any() else "tofu")
    metrics = list(rep.get("metrics", DEFAULT_METRICS.get(bench, DEFAULT_METRICS["tofu"])))
    rows = list(rep.get("rows", ["method", "scheduler", "variant"]))
    columns = rep.get("columns", "split")
    out = Path(out)
    result: dict[str, Any] = {"runs": int((df["model_role"] == "unlearned").sum()) if len(df) else 0, "files": []}
    if df.empty:
        result["message"] = f"no records under {runs}" + (f" for sweep {sweep}" if sweep else "")
        return result
    agg = aggregate(df, metrics, rows, columns)
    table = paper_table(agg, reference_rows(df, metrics, columns), metrics, columns, rows)
    result["files"] += write_tables(table, out)
    df.to_csv(out / "runs.csv", index=False)
    result["files"].append(out / "runs.csv")
    result["files"] += write_figures(df, out, rep.get("utility", "model_utility" if bench == "tofu" else "knowmem_r"))
    result["table"] = table
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="?", default=None, help="folder searched for record.json (default: <paths.runs>)")
    ap.add_argument("--sweep", help="only the runs of this sweep file (sweeps/<name>.yaml), with its table layout")
    ap.add_argument("--out", help="output folder (default: <paths.reports>/<sweep or all>)")
    ap.add_argument("--readme", help="also replace the block between <!-- report:NAME --> and <!-- /report:NAME --> "
                                     "in this Markdown file with the generated table (NAME: the sweep or 'all')")
    args = ap.parse_args(argv)
    import os

    root = Path(os.environ.get("UNLEARN_OUTPUTS", "outputs"))
    runs = Path(args.runs) if args.runs else root / "runs"
    out = Path(args.out) if args.out else root / "reports" / (args.sweep or "all")
    res = report(runs, out, args.sweep)
    if "table" in res:
        print(res["table"].to_string(index=False))
    print(f"\n{res['runs']} runs from {runs}" + (f" ({res['message']})" if "message" in res else ""))
    for p in res["files"]:
        print(f"wrote {p}")
    if args.readme and "table" in res:
        update_readme(Path(args.readme), args.sweep or "all", (out / "table.md").read_text())
        print(f"updated {args.readme}")


def update_readme(path: Path, name: str, table_md: str) -> None:
    """Put a generated table into a Markdown file between its markers (never typed by hand)."""
    start, end = f"<!-- report:{name} -->", f"<!-- /report:{name} -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table_md.rstrip()}\n{end}{tail}")


if __name__ == "__main__":
    main()
