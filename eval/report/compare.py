"""Paired comparisons against a named baseline: which differences in a table are real.

For each row of a report table (method, scheduler, ...) and each split, the runs are paired with
the baseline's runs that share every other row key and the seed (NGDiff + gen, seed 1 with GDiff +
gen, seed 1); per metric the table gives the mean of the paired differences (method - baseline),
its n, and the two-sided p-value of the paired t-test over seeds (``scipy.stats.ttest_rel``; a
Wilcoxon test needs more seeds than a table has). ``p`` is blank with fewer than two pairs or
differences that are all equal (no variance: the test is undefined).

Configured by a sweep file's ``report.compare`` (``{baseline: {method: gdiff}}``), or on the
command line (``--baseline method=gdiff``); every sweep that runs GDiff compares against it
unless told otherwise.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def paired_table(un: pd.DataFrame, baseline: Mapping[str, Any], metrics: Sequence[str], rows: Sequence[str],
                 columns: str | None = "split") -> pd.DataFrame:
    """``un``: one line per unlearned run (status ok), with ``rows``, ``columns``, ``seed`` and the metrics."""
    from scipy.stats import ttest_rel

    rows = list(rows)
    keys = rows + ([columns] if columns and columns in un else [])
    un = un[un["status"] == "ok"].copy()
    for k in keys:
        un[k] = un[k].astype(object).where(un[k].notna(), "")
    is_base = np.logical_and.reduce([un[k].astype(str) == str(v) for k, v in baseline.items()]) if baseline else None
    if is_base is None or not is_base.any():
        return pd.DataFrame()
    base, others = un[is_base], un[~is_base]
    match = [k for k in keys if k not in baseline]  # shared with the baseline row (scheduler, lr, split)
    out = []
    for key, g in others.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        line = dict(zip(keys, key))
        ref = base
        for k in match:
            ref = ref[ref[k].astype(str) == str(line[k])]
        if ref.empty:
            continue
        line["baseline"] = ", ".join(f"{k}={v}" for k, v in baseline.items())
        pairs = g.merge(ref, on="seed", suffixes=("", "_base"))
        for m in metrics:
            if m not in pairs or f"{m}_base" not in pairs:
                continue
            a = pd.to_numeric(pairs[m], errors="coerce")
            b = pd.to_numeric(pairs[f"{m}_base"], errors="coerce")
            ok = a.notna() & b.notna()
            d = (a[ok] - b[ok]).to_numpy(dtype=float)
            line[f"{m}_diff"] = float(d.mean()) if len(d) else math.nan
            line[f"{m}_n"] = int(len(d))
            line[f"{m}_p"] = (float(ttest_rel(a[ok], b[ok]).pvalue) if len(d) >= 2 and np.ptp(d) > 0 else math.nan)
        out.append(line)
    return pd.DataFrame(out)


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:+.3g}" if (abs(x) < 1e-3 and x != 0) or abs(x) >= 1e4 else f"{x:+.3f}"


def _p(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.2g}" + (" *" if x < 0.05 else "")


def paired_markdown(table: pd.DataFrame, metrics: Sequence[str], rows: Sequence[str], columns: str | None) -> str:
    """One column per metric: 'mean difference (p)', a star where p < 0.05."""
    if table.empty:
        return "(no baseline runs to pair with)\n"
    keys = list(rows) + ([columns] if columns and columns in table else [])
    head = keys + [f"Δ {m} (p)" for m in metrics if f"{m}_diff" in table]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r[k]) for k in keys]
        for m in metrics:
            if f"{m}_diff" in table:
                p = _p(r.get(f"{m}_p"))
                cells.append(_num(r.get(f"{m}_diff")) + (f" ({p})" if p else ""))
        lines.append("| " + " | ".join(cells) + " |")
    base = table["baseline"].iloc[0]
    n = int(np.nanmax([table[c].max() for c in table.columns if c.endswith("_n")])) if len(table) else 0
    return (f"Paired over seeds against {base} (same other keys and seed): mean difference (method - baseline), "
            f"paired t-test p-value, * p < 0.05; up to {n} pairs per cell.\n\n" + "\n".join(lines) + "\n")
