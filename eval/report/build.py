"""``python -m eval.report``: the tables, figures, spreads and paired comparisons of a folder of runs
(or of one sweep's runs), written into one output folder and, on request, into Markdown pages."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from eval.directions import DIRECTION
from eval.lm_eval.step import columns as lm_eval_columns
from eval.report.compare import paired_markdown, paired_table
from eval.report.figures import VARIANTS_KEY, write_figures
from eval.report.style import Styles, variant_ids
from eval.report.pages import write_blocks
from eval.report.spread import spread_markdown, spread_table
from eval.report.sweeps import _matches, parse_overrides, sweep_runs_dir, sweep_spec, variant_keys_excluded
from eval.report.tables import (DEFAULT_METRICS, aggregate, load_runs, numeric_table, paper_table, reference_rows,
                                warnings_note, write_tables)


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
    # the benchmark's columns, then those of the lm-eval tasks the runs ran (eval.lm_eval.tasks)
    metrics = list(rep.get("metrics", DEFAULT_METRICS.get(bench, DEFAULT_METRICS["tofu"]) + lm_eval_columns(df.columns)))
    rows = list(rep.get("rows", ["method", "scheduler", "variant"]))
    columns = rep.get("columns", "split")
    out = Path(out)
    result: dict[str, Any] = {"runs": int((df["model_role"] == "unlearned").sum()) if len(df) else 0, "files": []}
    if df.empty:
        result["message"] = f"no records under {runs}" + (f" for sweep {sweep}" if sweep else "")
        return result
    styles = Styles.build(df[(df["model_role"] == "unlearned") & df["variant_items"].map(lambda v: isinstance(v, tuple))])
    agg, table = tables(df, out, (metrics, rows, columns), styles, result)
    result["files"] += write_figures(df, out, bench, styles)
    result["table"] = table
    if rep.get("spread"):  # robustness over a setting (eval/report/spread.py)
        spread = spread_table(agg, rep["spread"], DIRECTION, tuple(rows), columns)
        (out / "spread.md").write_text(spread_markdown(spread))
        spread.to_csv(out / "spread.csv", index=False)
        result["files"] += [out / "spread.md", out / "spread.csv"]
        result["spread"] = spread
    # paired comparisons over seeds against a baseline (eval/report/compare.py): the sweep's, the caller's,
    # else GDiff when the table has it
    base = dict(baseline or (rep.get("compare") or {}).get("baseline") or {})
    un = df[df["model_role"] == "unlearned"]
    if not base and "method" in rows and (un["method"] == "gdiff").any():
        base = {"method": "gdiff"}
    if base:
        paired = paired_table(un, base, metrics, rows, columns)
        ids = result["variant_ids"]  # the short ids the table shows, the full variant in compare.csv
        shown = paired.assign(variant=[ids.get(v, v) for v in paired["variant"]]) if "variant" in paired else paired
        (out / "compare.md").write_text(paired_markdown(shown, metrics, rows, columns))
        paired.to_csv(out / "compare.csv", index=False)
        result["files"] += [out / "compare.md", out / "compare.csv"]
        result["compare"] = paired
    return result


def tables(df: pd.DataFrame, out: Path, layout: tuple[list[str], list[str], str | None], styles: Styles,
           result: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The aggregate and the displayed table, written with its numbers, ``runs.csv`` and, under
    ``table.md``, the runs' warnings and the key of the short variant ids the table and figures use."""
    metrics, rows, columns = layout
    ids = result["variant_ids"] = variant_ids(df[df["model_role"] == "unlearned"], styles)
    agg = in_id_order(aggregate(df, metrics, rows, columns), ids, rows, columns)
    refs = reference_rows(df, metrics, columns)
    table = paper_table(agg, refs, metrics, columns, rows)
    if "variant" in rows:
        table["variant"] = [ids.get(v, v) for v in table["variant"]]
    result["warnings"] = warnings_note(df, ids)
    shown = "variant" in rows or result["warnings"]
    note = result["warnings"] + ("\n" + styles.key_markdown() if shown and any(ids.values()) else "")
    result["files"] += write_tables(table, out, numeric_table(agg, refs, metrics, rows, columns), note.lstrip("\n"))
    df.drop(columns=["variant_items"]).to_csv(out / "runs.csv", index=False)
    result["files"].append(out / "runs.csv")
    return agg, table


def in_id_order(agg: pd.DataFrame, ids: Mapping[str, str], rows: list[str], columns: str | None) -> pd.DataFrame:
    """The aggregate's lines with the variants in the order of their short ids (v1, v2, ..., v10 after
    v9), not of their override strings."""
    if "variant" not in rows or agg.empty:
        return agg
    keys = ["_id" if r == "variant" else r for r in rows] + ([columns] if columns else [])
    number = agg["variant"].map(lambda v: int((ids.get(v) or "v0")[1:]) if isinstance(v, str) else 0)
    return (agg.assign(_id=number).sort_values(keys, kind="stable", na_position="last")
            .drop(columns="_id").reset_index(drop=True))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="?", default=None, help="folder searched for record.json (default: <paths.runs>)")
    ap.add_argument("--sweep", help="only the runs of this sweep file (sweeps/<name>.yaml), with its table layout")
    ap.add_argument("--out", help="output folder (default: <paths.reports>/<sweep or all>)")
    pages = ap.add_mutually_exclusive_group()
    pages.add_argument("--readme", help="also replace the block between <!-- report:NAME --> and <!-- /report:NAME --> "
                                        "in this Markdown file with the generated table (NAME: the sweep or 'all'; "
                                        "NAME:spread and NAME:compare for those tables)")
    pages.add_argument("--docs", help="as --readme, each block into the page under this folder (any *.md) that "
                                      "holds its markers")
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
    if (out / VARIANTS_KEY).exists():
        print("\n" + (out / VARIANTS_KEY).read_text().split("\n", 2)[2].rstrip())
    print("\n" + (res.get("warnings") or "no warnings (eval/health.py)").rstrip())
    if "spread" in res:
        print("\n" + spread_markdown(res["spread"]))
    if (args.readme or args.docs) and "table" in res:
        blocks = {args.sweep or "all": (out / "table.md").read_text()}
        if "spread" in res:
            blocks[f"{args.sweep}:spread"] = (out / "spread.md").read_text()
        if "compare" in res:  # written where a page holds its block
            blocks[f"{args.sweep}:compare"] = (out / "compare.md").read_text()
        try:
            written = write_blocks(blocks, readme=Path(args.readme) if args.readme else None,
                                   docs=Path(args.docs) if args.docs else None, optional=[f"{args.sweep}:compare"])
        except (OSError, ValueError) as e:  # a page without the block: one line, no traceback
            raise SystemExit(f"error: {e}")
        for page in written:
            print(f"updated {page}")
