"""Tables and figures regenerated from run records alone.

    python -m eval.report [RUNS_DIR] [--sweep NAME [--with KEY=VALUE ...]] [--out DIR] [--readme FILE]

reads every ``record.json`` under ``RUNS_DIR`` (default ``outputs/runs``; with ``--sweep`` only the
runs that sweep's grid selects), builds one pandas DataFrame (one row per run), and writes into
``--out`` (default ``outputs/reports/<sweep or all>``):

* ``table.{md,tex,csv}`` -- the paper's layout: one row per (method, scheduler, non-grid override),
  one column group per forget split, mean ± stderr over seeds, an arrow for each metric's better
  direction, the best value of each column in bold; the target and retain models as reference rows;
  failed, diverged or missing runs shown as such, never as zeros;
* figures (PNG and PDF), one panel per split, one mark or curve per method (mean over seeds): the
  final trade-off (TOFU: forget quality vs model utility; MUSE: KnowMem on D_f vs on D_r), the same
  along unlearning (trajectories), GeN's learning rate, task gradient norms and cosines, task losses.

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

from eval.directions import ARROW, DIRECTION  # noqa: F401  (re-exported: eval.report.DIRECTION)
from eval.figures import write_figures
from eval.records import RECORD_NAME, RECORD_VERSION, load_record
from eval.compare import paired_markdown, paired_table
from eval.spread import spread_markdown, spread_table

DEFAULT_METRICS = {"tofu": ["forget_quality", "model_utility", "forget_rouge", "retain_rouge"],
                   "muse": ["verbmem_f", "knowmem_f", "knowmem_r", "privleak"]}
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


def record_rows(path: Path, selected: bool = False) -> list[dict[str, Any]]:
    """Rows of one record: the unlearned model, plus the target and retain models as references.
    ``selected``: the unlearned model's numbers are those of the step ``eval.select`` chose (the
    trajectory's summary there), where the record has a selection; its ``selected_step`` says which."""
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
        "method": cfg.get("method", {}).get("name"),
        # a preset (scheduler=gen_calib) is its label; the scheduler it configures is its name
        "scheduler": cfg.get("scheduler", {}).get("label") or cfg.get("scheduler", {}).get("name"),
        "lr": cfg.get("method", {}).get("lr"), "variant": _variant(path.parent, rec), "seed": rec.get("seed"),
        "steps": (rec.get("unlearn") or {}).get("steps"), "seconds": (rec.get("timings") or {}).get("total"),
    }
    rows = []
    metrics = rec.get("metrics") or {}
    chosen = (rec.get("selection") or {}).get("metrics") if selected else None
    for role in ("unlearned", "target", "retain"):
        row = {**base, "model_role": role}
        m = {"summary": chosen} if role == "unlearned" and chosen else metrics.get(role)
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
    cols = keys + ["status", "n_ok"] + [f"{m}_{p}" for m in metrics for p in ("mean", "stderr", "n")]
    both = pd.concat([refs, agg], ignore_index=True) if len(refs) else agg
    both = both.reindex(columns=cols)
    for r in rows:
        both[r] = both[r].where(both[r].notna(), "")
    return both


def write_tables(table: pd.DataFrame, out: Path, numbers: pd.DataFrame | None = None) -> list[Path]:
    """table.md / table.tex: the displayed table; table.csv: its numbers (:func:`numeric_table`),
    or the displayed cells when no numbers are given."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "table.md", out / "table.tex", out / "table.csv"]
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    lines = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    paths[0].write_text(header + "\n".join(lines) + "\n")
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


def sweep_runs_dir(name: str, extra: Mapping[str, str] | None = None) -> Path:
    """Where a sweep's runs land: ``paths.runs`` of its grid's first job, composed as ``run.py``
    would (``sweeps/smoke.yaml`` sets ``debug: tiny``, whose runs are under ``outputs/debug/runs``)."""
    from unlearn.config import compose_config

    params = sweep_spec(name).get("params", {})
    first = [f"{k}={str(v).split(',')[0].strip()}" for k, v in params.items()]
    cfg = compose_config([*first, *(f"{k}={v}" for k, v in (extra or {}).items())])
    return Path(str(cfg.paths.runs))


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


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["method.max_steps=2"]`` -> ``{"method.max_steps": "2"}`` (a bad item is a clear error)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--with takes KEY=VALUE (an override the sweep was run with), got {item!r}")
        out[key] = value
    return out


def report(runs: str | Path, out: str | Path, sweep: str | None = None,
           extra: Mapping[str, str] | None = None, selected: bool = False,
           baseline: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``extra``: overrides given on the command line next to ``sweeps=NAME`` (they name the runs'
    variant directory too, so the sweep's runs are found only with them). ``selected``: the
    unlearned models' numbers at the step ``eval.select`` chose (the final ones otherwise)."""
    df = load_runs(runs, selected=selected)
    spec = sweep_spec(sweep) if sweep else {}
    if sweep and not df.empty:
        excluded = variant_keys_excluded()
        grid = {**spec.get("params", {}), **(extra or {})}
        df = df[df.apply(lambda r: _matches(r, grid, excluded), axis=1)]
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
    refs = reference_rows(df, metrics, columns)
    table = paper_table(agg, refs, metrics, columns, rows)
    result["files"] += write_tables(table, out, numeric_table(agg, refs, metrics, rows, columns))
    df.to_csv(out / "runs.csv", index=False)
    result["files"].append(out / "runs.csv")
    result["files"] += write_figures(df, out, bench)
    result["table"] = table
    if rep.get("spread"):  # robustness over a setting (eval/spread.py)
        spread = spread_table(agg, rep["spread"], DIRECTION, tuple(rows), columns)
        (out / "spread.md").write_text(spread_markdown(spread))
        spread.to_csv(out / "spread.csv", index=False)
        result["files"] += [out / "spread.md", out / "spread.csv"]
        result["spread"] = spread
    # paired comparisons over seeds against a baseline (eval/compare.py): the sweep's, the caller's,
    # else GDiff when the table has it
    base = dict(baseline or (rep.get("compare") or {}).get("baseline") or {})
    un = df[df["model_role"] == "unlearned"]
    if not base and "method" in rows and (un["method"] == "gdiff").any():
        base = {"method": "gdiff"}
    if base:
        paired = paired_table(un, base, metrics, rows, columns)
        (out / "compare.md").write_text(paired_markdown(paired, metrics, rows, columns))
        paired.to_csv(out / "compare.csv", index=False)
        result["files"] += [out / "compare.md", out / "compare.csv"]
        result["compare"] = paired
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="?", default=None, help="folder searched for record.json (default: <paths.runs>)")
    ap.add_argument("--sweep", help="only the runs of this sweep file (sweeps/<name>.yaml), with its table layout")
    ap.add_argument("--out", help="output folder (default: <paths.reports>/<sweep or all>)")
    ap.add_argument("--readme", help="also replace the block between <!-- report:NAME --> and <!-- /report:NAME --> "
                                     "in this Markdown file with the generated table (NAME: the sweep or 'all')")
    ap.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                    help="the rows every other row is compared with, paired over seeds (default: the sweep's "
                         "report.compare, else method=gdiff when present), e.g. method=gdiff")
    ap.add_argument("--selected", action="store_true",
                    help="the unlearned models at the step eval.select chose (trajectory metrics), not the final ones")
    ap.add_argument("--with", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="an override the sweep was run with besides its grid (repeatable), e.g. method.epochs=10")
    args = ap.parse_args(argv)
    import os

    root = Path(os.environ.get("UNLEARN_OUTPUTS", "outputs"))
    extra = parse_overrides(args.extra)
    try:
        runs = Path(args.runs) if args.runs else sweep_runs_dir(args.sweep, extra) if args.sweep else root / "runs"
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}")
    if not runs.is_dir():
        raise SystemExit(f"error: no folder {runs} (the runs are searched for record.json there)")
    out = Path(args.out) if args.out else root / "reports" / (args.sweep or "all")
    res = report(runs, out, args.sweep, extra, selected=args.selected, baseline=parse_overrides(args.baseline))
    if res["runs"] == 0:
        raise SystemExit(f"error: no runs found under {runs}" + (f" for sweep {args.sweep}" if args.sweep else ""))
    if "table" in res:
        print(res["table"].to_string(index=False))
    print(f"\n{res['runs']} runs from {runs}" + (f" ({res['message']})" if "message" in res else ""))
    for p in res["files"]:
        print(f"wrote {p}")
    if "spread" in res:
        print("\n" + spread_markdown(res["spread"]))
    if args.readme and "table" in res:
        update_readme(Path(args.readme), args.sweep or "all", (out / "table.md").read_text())
        if "spread" in res:
            update_readme(Path(args.readme), f"{args.sweep}:spread", (out / "spread.md").read_text())
        if "compare" in res and f"<!-- report:{args.sweep}:compare -->" in Path(args.readme).read_text():
            update_readme(Path(args.readme), f"{args.sweep}:compare", (out / "compare.md").read_text())
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
