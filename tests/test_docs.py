"""The README stays a front door and the docs stay connected.

The README is read first and whole, so it is kept short; every page it and docs/ link to must
exist (an anchor must name one of the page's headings); and every generated block
(``<!-- report:NAME -->`` ... ``<!-- /report:NAME -->``, rewritten by ``python -m eval.report
--sweep NAME --docs docs``) is closed in the page that opens it and lives in exactly one page.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES = 300

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target), not images
OPEN = re.compile(r"^<!-- report:([^ >]+) -->$", re.M)  # a marker is a line of its own
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_readme_is_short():
    n = len(ROOT.joinpath("README.md").read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines (at most {MAX_README_LINES}): move detail into docs/"


def test_relative_links_resolve():
    broken = []
    for page in PAGES:
        for target in LINK.findall(FENCE.sub("", page.read_text())):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_report_blocks_closed_and_unique():
    seen: dict[str, Path] = {}
    for page in PAGES:
        text = page.read_text()
        for m in OPEN.finditer(text):
            name = m.group(1)
            close = f"<!-- /report:{name} -->"
            assert text.count(m.group(0)) == 1, f"{page.name}: <!-- report:{name} --> opens twice"
            assert close in text[m.end():], f"{page.name}: <!-- report:{name} --> has no {close} after it"
            assert name not in seen, f"report block {name} is in both {seen[name].name} and {page.name}"
            seen[name] = page
        for name in re.findall(r"^<!-- /report:([^ >]+) -->$", text, re.M):
            assert f"<!-- report:{name} -->" in text, f"{page.name}: <!-- /report:{name} --> closes nothing"
    # the blocks the report and the README's run section write, each in its page
    expected = {"default-run": "README.md", "headline": "README.md", "tofu_main": "results.md", "muse_main": "results.md",
                "lr_sensitivity": "results.md", "lr_sensitivity:compare": "results.md",
                "gen_study": "gen_study.md", "gen_study:spread": "gen_study.md",
                "gen_study_muse": "gen_study.md", "gen_study_muse:spread": "gen_study.md"}
    assert {k: seen[k].name for k in expected if k in seen} == expected


def test_the_headline_is_drawn_from_the_generated_tables_as_they_stand():
    from eval.report.headline import headline
    from eval.report.pages import markers

    start, end = markers("headline")
    block = (ROOT / "README.md").read_text().split(start, 1)[1].split(end, 1)[0].strip()
    assert block == headline(ROOT / "docs")  # python -m eval.report.headline leaves README as it is


def test_the_headline_picks_its_rows_and_columns(tmp_path):
    from eval.report.headline import COLUMNS, ROWS, headline

    docs = tmp_path / "docs"
    docs.mkdir()
    tofu_cols = [c for b, c, _ in COLUMNS if b == "tofu_main"] + ["forget_rouge ↓ [forget10]"]
    muse_cols = [c for b, c, _ in COLUMNS if b == "muse_main"]

    def table(name, cols, tag):
        rows = [f"| {m} | {s} | " + " | ".join(f"**{tag}{i}{m}{s}**" if i == 0 else f"{tag}{i}{m}{s}"
                                                for i in range(len(cols))) + " |" for (m, s), _ in ROWS]
        rows.append("| other | gen | " + " | ".join("x" for _ in cols) + " |")
        return "\n".join([f"<!-- report:{name} -->", "| method | scheduler | " + " | ".join(cols) + " |",
                          "|---" * (len(cols) + 2) + "|", *rows, f"<!-- /report:{name} -->"])

    (docs / "a.md").write_text("# A\n\n" + table("tofu_main", tofu_cols, "t") + "\n\ntext\n")
    (docs / "b.md").write_text(table("muse_main", muse_cols, "m") + "\n")
    lines = headline(docs).splitlines()
    assert len(lines) == 2 + len(ROWS) and "other" not in headline(docs) and "**" not in headline(docs)
    assert lines[4] == "| GDiff | fixed | t0gdiffconstant | t1gdiffconstant | m0gdiffconstant | m1gdiffconstant | " \
                       "m2gdiffconstant | m3gdiffconstant |"
    (docs / "b.md").write_text(table("muse_main", muse_cols, "m").replace("| npo | gen |", "| npo2 | gen |") + "\n")
    with pytest.raises(ValueError, match="npo gen has no row in the muse_main table"):
        headline(docs)


# "about 6 minutes", "~15 min", "an hour", "in seconds", "under 5 minutes", "20 s", ...
TIME = re.compile(r"(?:(?:about|under|~|within)\s*)?(?:\d+(?:\.\d+)?\s*(?:minutes?|min|hours?|seconds?|s)"
                  r"|an hour|a few (?:minutes|seconds))\b|\bin seconds\b", re.I)


def test_every_time_the_readme_states_is_a_measured_claim():
    """A time in the README is one of bench/readme_times.py's claims (which measures it), worded the same."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_times", ROOT / "bench" / "readme_times.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    text = ROOT.joinpath("README.md").read_text()
    phrases = {c.phrase for c in mod.CLAIMS}
    stated = {m.group(0).strip() for m in TIME.finditer(text)}
    unmeasured = sorted(s for s in stated if s not in phrases)
    assert not unmeasured, f"README states times no claim of bench/readme_times.py measures: {unmeasured}"
    missing = sorted(p for p in phrases if p not in text)
    assert not missing, f"claims of bench/readme_times.py the README no longer states: {missing}"
