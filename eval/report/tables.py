"""Run records -> one pandas DataFrame -> the paper's table (mean ± stderr over seeds, the better
direction's arrow, the best value in bold, reference rows) as Markdown, LaTeX and CSV."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from eval.directions import ARROW, DIRECTION
from eval.health import read_steps, record_warnings
from eval.records import RECORD_NAME, RECORD_VERSION, load_record
from eval.report.sweeps import variant_items, variant_keys_excluded

DEFAULT_METRICS = {"tofu": ["forget_quality", "model_utility", "forget_rouge", "retain_rouge"],
                   "muse": ["verbmem_f", "knowmem_f", "knowmem_r", "privleak"],
                   "wmdp": ["forget_acc", "general_acc"]}
ID_COLUMNS = ["benchmark", "dataset", "split", "model", "method", "scheduler", "variant", "seed"]


# ------------------------------------------------------------------------------------------------
# records -> DataFrame
# ------------------------------------------------------------------------------------------------
def find_records(root: str | Path) -> list[Path]:
    return sorted(Path(root).rglob(RECORD_NAME))


def _variant(run_dir: Path, rec: Mapping[str, Any]) -> str:
    """The non-group overrides of a run: as the record states them (a long or shell-unfriendly
    override list names its directory by a shortened form), else the directory between
    method-scheduler and seedN."""
    stated = (rec.get("overrides") or {}).get("variant")
    if stated is not None:
        return stated or "default"
    parts = run_dir.parts
    return parts[-2] if len(parts) >= 2 and parts[-1].startswith("seed") else "default"


def variant_items_of(rec: Mapping[str, Any], variant: str) -> tuple[tuple[str, str], ...]:
    """The overrides that make a run's variant, as (key, value) pairs in key order: each command-line
    override of the record whole (its value may hold anything: ``=``, ``,``, brackets, spaces), less
    the keys that never name a variant; a record without its overrides (a run outside Hydra, a
    hand-made record) falls back to its variant directory's name."""
    task = (rec.get("overrides") or {}).get("task")
    if task is None:
        return tuple(sorted(variant_items(variant).items()))
    excluded = variant_keys_excluded()
    pairs = (o.lstrip("+~").split("=", 1) for o in task if "=" in o)
    return tuple(sorted((k, v) for k, v in pairs if k not in excluded))


def _warnings(path: Path, rec: Mapping[str, Any], chosen: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The record's warnings; a record written before runs kept them gets them computed here, and
    so does a row of the selected step (``chosen``): its utility is checked, not the final model's."""
    if "warnings" in rec and not chosen:
        return list(rec["warnings"] or [])
    return record_warnings(rec, read_steps(path.parent / (rec.get("logs") or {}).get("steps", "steps.jsonl")), chosen)


def record_rows(path: Path, selected: bool = False) -> list[dict[str, Any]]:
    """Rows of one record: the unlearned model, plus the target and retain models as references.
    ``selected``: the unlearned model's numbers are those of the step ``eval.select`` chose (the
    trajectory's summary there), where the record has a selection; its ``selected_step`` says which.
    An evaluation of a checkpoint (``python -m eval.evaluate``) has no method or scheduler: its
    ``method`` is the checkpoint's label."""
    try:
        rec = load_record(path)
    except ValueError as e:  # a malformed record is reported, not silently dropped or zeroed
        return [{"run_dir": str(path.parent), "status": "malformed", "error": str(e), "model_role": "unlearned"}]
    if rec.get("record_version") != RECORD_VERSION:
        return [{"run_dir": str(path.parent), "status": f"record_version {rec.get('record_version')}",
                 "model_role": "unlearned", "error": f"written by another version (this code reads {RECORD_VERSION})"}]
    cfg = rec.get("config", {})
    variant = _variant(path.parent, rec)
    base = {
        "run_dir": str(path.parent), "status": rec["status"], "kind": rec.get("kind", "unlearn"),
        "benchmark": cfg.get("dataset", {}).get("benchmark"), "dataset": cfg.get("dataset", {}).get("name"),
        "split": cfg.get("dataset", {}).get("split"), "model": cfg.get("model", {}).get("name"),
        "method": (rec.get("evaluated") or {}).get("name") or cfg.get("method", {}).get("name"),
        # a preset (scheduler=gen_calib) is its label; the scheduler it configures is its name
        "scheduler": cfg.get("scheduler", {}).get("label") or cfg.get("scheduler", {}).get("name"),
        "lr": cfg.get("method", {}).get("lr"), "variant": variant, "variant_items": variant_items_of(rec, variant),
        "seed": rec.get("seed"),
        "steps": (rec.get("unlearn") or {}).get("steps"), "seconds": (rec.get("timings") or {}).get("total"),
    }
    rows = []
    metrics = rec.get("metrics") or {}
    chosen = (rec.get("selection") or {}).get("metrics") if selected else None
    for role in ("unlearned", "target", "retain"):
        row = {**base, "model_role": role}
        m = {"summary": chosen} if role == "unlearned" and chosen else metrics.get(role)
        if role == "unlearned":
            warnings = _warnings(path, rec, chosen)
            row["warnings"] = "; ".join(w["kind"] for w in warnings)
            row["warning_messages"] = " | ".join(w["message"] for w in warnings)
        if role == "unlearned" and chosen:
            row["selected_step"] = chosen.get("step")
        if m:
            row.update({k: v for k, v in m["summary"].items() if isinstance(v, (int, float)) or v is None})
        elif role != "unlearned":
            continue
        rows.append(row)
    return rows


def load_runs(root: str | Path, records: Iterable[Path] | None = None, selected: bool = False) -> pd.DataFrame:
    paths = list(records) if records is not None else find_records(root)
    rows = [r for p in paths for r in record_rows(p, selected)]
    df = pd.DataFrame(rows)
    for col in ["run_dir", "status", "model_role", "variant_items", *ID_COLUMNS]:  # present even if no record has them
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
        line["n_warnings"] = int((g["warnings"].fillna("") != "").sum()) if "warnings" in g else 0
        for m in metrics:
            mean, se, n = mean_stderr(ok[m]) if m in ok else (math.nan, math.nan, 0)
            line[f"{m}_mean"], line[f"{m}_stderr"], line[f"{m}_n"] = mean, se, n
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
            line[f"{m}_mean"], line[f"{m}_stderr"], line[f"{m}_n"] = mean_stderr(g[m]) if m in g else (math.nan, math.nan, 0)
        out.append(line)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------
def _digits(x: float, sci: bool) -> str:
    return f"{x:.3g}" if sci else f"{x:.3f}"


def _sci(mean: float) -> bool:
    """Scientific notation for a mean that three decimals would not show (or a large one)."""
    return (abs(mean) < 1e-3 and mean != 0) or abs(mean) >= 1e4


def _fmt(mean: float, se: float) -> str:
    """'mean ± stderr', both in the mean's notation (three decimals, or three significant digits
    for a mean below 1e-3): '0.008 ± 0.000', '5.86e-09 ± 1.2e-10'; no ± part for one seed."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    sci = _sci(mean)
    return _digits(mean, sci) + (f" ± {_digits(se, sci)}" if se and not math.isnan(se) and se > 0 else "")


def _best(values: pd.Series, direction: str) -> list[Any]:
    """The rows holding the best mean -- every row whose displayed mean equals the best's (ties
    are marked alike)."""
    v = pd.to_numeric(values, errors="coerce")
    if v.notna().sum() == 0:
        return []
    best = v.max() if direction == "max" else v.min() if direction == "min" else v.abs().min()
    key = v.abs() if direction == "zero" else v
    shown = lambda x: _digits(x, _sci(x))  # noqa: E731
    return [i for i in v.index if not math.isnan(key[i]) and shown(key[i]) == shown(best)]


def paper_table(agg: pd.DataFrame, refs: pd.DataFrame, metrics: list[str], columns: str | None = "split",
                rows: list[str] = ("method", "scheduler", "variant")) -> pd.DataFrame:
    """The displayed table: cells 'mean ± stderr', best per column marked with **…**, failures named."""
    rows = list(rows)
    splits = sorted(agg[columns].dropna().unique()) if columns and columns in agg else [None]
    body = []
    for key, g in agg.groupby(rows, dropna=False, sort=False):  # the aggregate's order (eval.report.build.in_id_order)
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
        table[col] = [("**" + _fmt(*x) + "**" if i in best else _fmt(*x)) if isinstance(x, tuple) else x
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


def numeric_table(agg: pd.DataFrame, refs: pd.DataFrame, metrics: list[str], rows: list[str],
                  columns: str | None = "split") -> pd.DataFrame:
    """``table.csv``: the table's numbers, machine-readable -- one line per (row, split), and for
    each metric its mean, stderr and n (seeds that entered the mean) as columns; the reference
    models first; ``status`` names failures (never a zero)."""
    keys = rows + ([columns] if columns and columns in agg else [])
    cols = keys + ["status", "n_ok", "n_warnings"] + [f"{m}_{p}" for m in metrics for p in ("mean", "stderr", "n")]
    both = pd.concat([refs, agg], ignore_index=True) if len(refs) else agg
    both = both.reindex(columns=cols)
    for r in rows:
        both[r] = both[r].where(both[r].notna(), "")
    return both


def warnings_note(df: pd.DataFrame, ids: Mapping[str, str] | None = None, limit: int = 20) -> str:
    """The table's footnote: how many unlearned runs have warnings (:mod:`eval.health`: a collapsed
    utility, a rate GeN moved far) and what each says, one line per run (the first ``limit``), each
    run named by method+scheduler, its variant's short id (``ids``), split and seed."""
    un = df[df["model_role"] == "unlearned"]
    bad = un[un["warnings"].fillna("") != ""] if "warnings" in un else un.iloc[0:0]
    if bad.empty:
        return ""
    lines = [f"Warnings: {len(bad)} of {len(un)} runs (eval/health.py; runs.csv: warnings)", ""]
    for _, r in bad.head(limit).iterrows():
        who = ["+".join(str(p) for p in (r["method"], r["scheduler"]) if isinstance(p, str) and p), (ids or {}).get(r["variant"], ""), r["split"], f"seed {r['seed']}"]
        lines.append(f"- {' '.join(str(p) for p in who if p)}: {r['warning_messages']}")
    if len(bad) > limit:
        lines.append(f"- ... and {len(bad) - limit} more")
    return "\n".join(lines) + "\n"


def write_tables(table: pd.DataFrame, out: Path, numbers: pd.DataFrame | None = None, note: str = "") -> list[Path]:
    """table.md / table.tex: the displayed table (``note``, a footnote, under the Markdown one);
    table.csv: its numbers (:func:`numeric_table`), or the displayed cells when no numbers are given."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.md", out / "table.tex", out / "table.csv"]
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    paths[0].write_text(header + "\n".join(lines) + "\n" + (f"\n{note}" if note else ""))
    tex = table.map(lambda v: _latex_cell(str(v)))
    tex.columns = [_latex_cell(c) for c in table.columns]
    paths[1].write_text(tex.to_latex(index=False, escape=False))
    (numbers if numbers is not None else table).to_csv(paths[2], index=False)
    return paths


def _latex_cell(s: str) -> str:
    s = s.replace("_", r"\_").replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
    s = s.replace("→0", r"$\to 0$")
    if s.startswith("**") and s.endswith("**"):
        s = r"\textbf{" + s[2:-2] + "}"
    return s
