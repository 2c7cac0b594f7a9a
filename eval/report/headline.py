"""The README's headline table, derived from the generated tables under ``docs/`` (never typed by
hand): a few rows of the TOFU and MUSE main tables (``report:tofu_main``, ``report:muse_main``) and a
few of their columns, side by side, written into the README's ``report:headline`` block.

    python -m eval.report.headline [--docs docs] [--readme README.md]

Run it after ``python -m eval.report --sweep tofu_main --docs docs`` (or ``muse_main``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from eval.report.pages import markers, page_of, update_block

# (block, column in that table, the headline's header)
COLUMNS = [("tofu_main", "forget_quality ↑ [forget10]", "TOFU FQ ↑"),
           ("tofu_main", "model_utility ↑ [forget10]", "TOFU MU ↑"),
           ("muse_main", "verbmem_f ↓ [news]", "MUSE VerbMem_f ↓"),
           ("muse_main", "knowmem_f ↓ [news]", "MUSE KnowMem_f ↓"),
           ("muse_main", "knowmem_r ↑ [news]", "MUSE KnowMem_r ↑"),
           ("muse_main", "privleak →0 [news]", "MUSE PrivLeak →0")]
# (method, scheduler) as the main tables name them, and as the headline shows them
ROWS = [(("(retain)", ""), ("(retain)", "")), (("(target)", ""), ("(target)", "")),
        (("gdiff", "constant"), ("GDiff", "fixed")), (("gdiff", "gen"), ("GDiff", "GeN")),
        (("npo", "constant"), ("NPO", "fixed")), (("npo", "gen"), ("NPO", "GeN")),
        (("ngdiff", "constant"), ("NGDiff", "fixed")), (("ngdiff", "gen"), ("NGDiff", "GeN"))]


def read_table(docs: Path, name: str) -> dict[tuple[str, str], dict[str, str]]:
    """Block ``name``'s Markdown table: (method, scheduler) -> {column: cell, bold marks removed}."""
    page = page_of(docs, name)
    if page is None:
        raise ValueError(f"no page under {docs} holds {markers(name)[0]}")
    start, end = markers(name)
    body = page.read_text().split(start, 1)[1].split(end, 1)[0]
    lines = [ln for ln in body.strip().splitlines() if ln.startswith("|")]
    cells = [[c.strip().replace("**", "") for c in ln.strip().strip("|").split("|")] for ln in lines]
    header, rows = cells[0], cells[2:]
    return {(r[0], r[1]): dict(zip(header, r)) for r in rows}


def headline(docs: Path) -> str:
    tables = {block: read_table(docs, block) for block in {b for b, _, _ in COLUMNS}}
    out = ["| method | rate | " + " | ".join(h for _, _, h in COLUMNS) + " |",
           "|---|---|" + "---|" * len(COLUMNS)]
    for key, (method, rate) in ROWS:
        missing = [b for b in tables if key not in tables[b]]
        if missing:
            raise ValueError(f"{' '.join(key).strip()} has no row in the {', '.join(missing)} table under {docs}")
        out.append(f"| {method} | {rate} | " + " | ".join(tables[b][key][c] for b, c, _ in COLUMNS) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m eval.report.headline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="docs", help="the pages holding the main tables (default: %(default)s)")
    ap.add_argument("--readme", default="README.md", help="the page with the headline block (default: %(default)s)")
    args = ap.parse_args(argv)
    try:
        update_block(Path(args.readme), "headline", headline(Path(args.docs)))
    except ValueError as e:
        raise SystemExit(f"error: {e}")
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
