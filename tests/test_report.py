"""Aggregation of records into the paper's tables, on hand-made records; every sweep composes;
a tiny sweep runs through Hydra multirun and its report regenerates identically."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from eval.records import RECORD_VERSION
from eval.report.build import report
from eval.report.sweeps import parse_overrides
from eval.report.tables import aggregate, load_runs, mean_stderr, paper_table, reference_rows
from tests.conftest import compose_cfg
from unlearn.config import ROOT

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


def write_record(root, method, split, seed, status="ok", fq=None, mu=None, scheduler="gen", variant="default"):
    run_dir = root / "tofu_synth" / split / "tiny_llama" / f"{method}-{scheduler}" / variant / f"seed{seed}"
    run_dir.mkdir(parents=True)
    rec = {"record_version": RECORD_VERSION, "status": status, "seed": seed,
           "config": {"dataset": {"benchmark": "tofu", "name": "tofu_synth", "split": split},
                      "model": {"name": "tiny_llama"}, "method": {"name": method, "lr": 1e-4},
                      "scheduler": {"name": scheduler}}}
    if status != "failed":
        rec["metrics"] = {
            "unlearned": {"summary": {"forget_quality": fq, "model_utility": mu}},
            "target": {"summary": {"forget_quality": 1e-5, "model_utility": 0.5}},
            "retain": {"summary": {"forget_quality": 1.0, "model_utility": 0.45}},
        }
    (run_dir / "record.json").write_text(json.dumps(rec))


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    write_record(root, "ngdiff", "forget10", 0, fq=0.1, mu=0.40)
    write_record(root, "ngdiff", "forget10", 1, fq=0.3, mu=0.44)
    write_record(root, "ngdiff", "forget10", 2, status="failed")
    write_record(root, "gdiff", "forget10", 0, fq=0.01, mu=0.30)
    write_record(root, "ga", "forget10", 0, status="failed")
    write_record(root, "ga", "forget10", 1, status="diverged", fq=0.5, mu=0.1)
    write_record(root, "gdiff", "forget05", 0, fq=0.2, mu=0.35)
    return root


def test_equal_values_have_no_stderr():
    assert mean_stderr(pd.Series([0.7] * 3)) == (pytest.approx(0.7), 0.0, 3)  # np.std gives 1.4e-16 here
    assert mean_stderr(pd.Series([0.1, 0.3, None])) == (pytest.approx(0.2), pytest.approx(0.1), 2)


def test_mean_and_stderr_over_ok_seeds_only(runs):
    df = load_runs(runs)
    agg = aggregate(df, ["forget_quality", "model_utility"], rows=["method"], columns="split")
    ng = agg[(agg["method"] == "ngdiff") & (agg["split"] == "forget10")].iloc[0]
    assert ng["forget_quality_mean"] == pytest.approx(0.2)
    # sample std of (0.1, 0.3) = 0.1414; / sqrt(2) = 0.1
    assert ng["forget_quality_stderr"] == pytest.approx(0.1)
    assert ng["model_utility_mean"] == pytest.approx(0.42) and ng["model_utility_stderr"] == pytest.approx(0.02)
    assert ng["n_ok"] == 2 and ng["status"] == "1 failed"
    ga = agg[agg["method"] == "ga"].iloc[0]
    assert ga["n_ok"] == 0 and ga["status"] == "1 diverged, 1 failed" and math.isnan(ga["forget_quality_mean"])


def test_table_marks_best_and_shows_failures_and_missing_cells(runs):
    df = load_runs(runs)
    metrics = ["forget_quality", "model_utility"]
    agg = aggregate(df, metrics, rows=["method"], columns="split")
    table = paper_table(agg, reference_rows(df, metrics), metrics, "split", rows=["method"])
    row = {r["method"]: r for r in table.to_dict("records")}
    col = "forget_quality ↑ [forget10]"
    assert row["ngdiff"][col] == "**0.200 ± 0.100**"  # best forget quality on forget10
    assert row["gdiff"][col] == "0.010"  # one seed: no ± part
    assert row["ga"][col] == "1 diverged, 1 failed"  # never a zero
    assert row["ngdiff"]["forget_quality ↑ [forget05]"] == "missing"
    assert row["(retain)"][col] == "1.000" and row["(target)"]["model_utility ↑ [forget10]"] == "0.500"


def test_ties_are_marked_alike_and_numbers_share_a_notation(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write_record(root, "ngdiff", "forget10", seed, fq=1.0, mu=0.4)
        write_record(root, "gdiff", "forget10", seed, fq=0.99999, mu=0.3)  # shown as 1.000: a tie
        write_record(root, "npo", "forget10", seed, fq=0.008 + seed * 1e-6, mu=0.2)
    df = load_runs(root)
    metrics = ["forget_quality", "model_utility"]
    table = paper_table(aggregate(df, metrics, rows=["method"]), reference_rows(df, metrics), metrics, "split",
                        rows=["method"])
    row = {r["method"]: r for r in table.to_dict("records")}
    col = "forget_quality ↑ [forget10]"
    assert row["ngdiff"][col] == "**1.000**" and row["gdiff"][col] == "**1.000**"
    assert row["npo"][col] == "0.008 ± 0.000"  # the stderr (5e-7) in the mean's notation
    assert row["ngdiff"]["model_utility ↑ [forget10]"] == "**0.400**" and row["gdiff"]["model_utility ↑ [forget10]"] == "0.300"


def test_table_csv_is_numeric(runs, tmp_path):
    out = tmp_path / "reports"
    report(runs, out)
    csv = pd.read_csv(out / "table.csv")
    assert list(csv.columns[:5]) == ["method", "scheduler", "variant", "split", "status"]
    ng = csv[(csv["method"] == "ngdiff") & (csv["split"] == "forget10")].iloc[0]
    assert ng["forget_quality_mean"] == pytest.approx(0.2) and ng["forget_quality_stderr"] == pytest.approx(0.1)
    assert ng["forget_quality_n"] == 2 and ng["status"] == "1 failed"
    assert csv["forget_quality_mean"].dtype == float  # no '±' or '**' strings
    ga = csv[csv["method"] == "ga"].iloc[0]
    assert ga["n_ok"] == 0 and math.isnan(ga["forget_quality_mean"]) and ga["status"] == "1 diverged, 1 failed"
    assert csv["method"].iloc[0] == "(retain)"


def test_report_writes_tables_and_is_reproducible(runs, tmp_path):
    out = tmp_path / "reports"
    first = report(runs, out)
    names = sorted(p.name for p in first["files"])
    assert {"table.md", "table.tex", "table.csv", "runs.csv", "tradeoff_final.png", "tradeoff_final.pdf"} <= set(names)
    tables = {n: (out / n).read_text() for n in ("table.md", "table.tex", "table.csv")}
    assert "\\textbf{" in tables["table.tex"] and "$\\uparrow$" in tables["table.tex"]
    shutil.rmtree(out)
    report(runs, out)
    assert {n: (out / n).read_text() for n in tables} == tables


def test_a_sweep_report_reads_only_the_runs_of_its_grid(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    write_record(root, "gdiff", "forget10", 0, fq=0.1, mu=0.4)  # tofu_main's run (no variant)
    write_record(root, "gdiff", "forget10", 0, fq=0.9, mu=0.0, variant="method.lr=0.001")  # lr_sensitivity's
    write_record(root, "gdiff", "forget10", 1, fq=0.5, mu=0.2, variant="method.lr=0.001,eval.x=2")  # neither
    write_record(root, "gdiff", "forget10", 2, fq=0.7, mu=0.3, variant="method.lr=0.002")  # not in the grid
    grids = {"main": {"params": {"method": "gdiff", "dataset.split": "forget10", "seed": "0,1,2"}},
             "lr": {"params": {"method": "gdiff", "method.lr": "1e-3,1e-4", "seed": "0,1,2", "threads": 1}}}
    monkeypatch.setattr("eval.report.build.sweep_spec", lambda name: grids[name])
    main = report(root, tmp_path / "main", sweep="main")["table"]
    lr = report(root, tmp_path / "lr", sweep="lr")["table"]
    assert main[main["method"] == "gdiff"]["forget_quality ↑ [forget10]"].tolist() == ["**0.100**"]
    assert lr[lr["method"] == "gdiff"]["forget_quality ↑ [forget10]"].tolist() == ["**0.900**"]
    # an override given next to the sweep on the command line: its runs are found when the report is told
    both = report(root, tmp_path / "x", sweep="lr", extra=parse_overrides(["eval.x=2"]))["table"]
    assert both[both["method"] == "gdiff"]["forget_quality ↑ [forget10]"].tolist() == ["**0.500**"]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["eval.x"])


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_file_composes_and_names_its_command(sweep):
    text = (ROOT / "sweeps" / f"{sweep}.yaml").read_text()
    assert text.splitlines()[0].startswith(f"# python run.py -m sweeps={sweep}")
    cfg = compose_cfg([f"sweeps={sweep}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params and "method" in params or "method.lr" in params
    from unlearn.methods import METHODS

    for name in str(params.get("method", "")).split(","):
        assert not name or name in METHODS, f"sweep {sweep} names unknown method {name}"
    # each grid point composes as well (first value of each axis)
    point = [f"{k}={str(v).split(',')[0]}" for k, v in params.items()]
    compose_cfg(point)


@pytest.mark.slow  # a subprocess multirun: the slow tier (CI runs it)
def test_a_tiny_sweep_runs_through_multirun_and_reports(tmp_path, shared_cache):
    # UNLEARN_CACHE: the session's stage cache (paths.cache), not one under this output root
    env = {**os.environ, "UNLEARN_OUTPUTS": str(tmp_path), "UNLEARN_CACHE": str(shared_cache)}
    proc = subprocess.run([sys.executable, "run.py", "-m", "sweeps=smoke", "method.max_steps=2"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "debug" / "cache").exists() and list(shared_cache.glob("target/*/DONE"))
    runs = tmp_path / "debug" / "runs"
    assert len(list(runs.rglob("record.json"))) == 4
    out = tmp_path / "reports"
    # the command-line override next to the sweep names the runs' variant: the report is told of it
    # as the README writes it: no folder given, the sweep's own (debug=tiny: outputs/debug/runs) is searched
    cmd = [sys.executable, "-m", "eval.report", "--sweep", "smoke", "--with", "method.max_steps=2", "--out", str(out)]
    bare = subprocess.run(cmd[:-4] + cmd[-2:], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert bare.returncode == 1 and bare.stderr.strip() == f"error: no runs found under {runs} for sweep smoke"
    assert not out.exists()
    empty = subprocess.run([sys.executable, "-m", "eval.report", str(tmp_path / "nowhere")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert empty.returncode == 1 and "no folder" in empty.stderr and "Traceback" not in empty.stderr
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"4 runs from {runs}" in proc.stdout
    table = (out / "table.md").read_text()
    assert "| ga | gen |" in table and "| ngdiff | gen |" in table and "(retain)" in table
    assert (out / "tradeoff_trajectories.png").exists() and (out / "learning_rate.pdf").exists()
    before = {p.name: p.read_text() for p in out.glob("table.*")}
    shutil.rmtree(out)
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
    assert {p.name: p.read_text() for p in out.glob("table.*")} == before


def test_gen_rate_figure_from_step_logs(tmp_path):
    """Rate used vs the fitted vertex per initial rate, means over seeds, only positive vertices."""
    from eval.report.figures import plotted_runs
    from eval.report.gen_figure import gen_rate_series

    root = tmp_path / "runs"
    logs = {(1e-4, 0): ([1e-4, 1.2e-4, 1.3e-4], [5e-4, None, -1.0]), (1e-4, 1): ([1e-4, 1.4e-4, 1.5e-4], [7e-4, None, 2e-4]),
            (1e-3, 0): ([1e-3, 8e-4, 7e-4], [3e-4, None, 4e-4])}
    for (lr, seed), (rates, vertices) in logs.items():
        variant = f"method.lr={lr:g}"
        write_record(root, "ngdiff", "forget10", seed, fq=0.1, mu=0.4, variant=variant)
        run_dir = root / "tofu_synth" / "forget10" / "tiny_llama" / "ngdiff-gen" / variant / f"seed{seed}"
        rec = json.loads((run_dir / "record.json").read_text())
        rec["config"]["method"]["lr"] = lr
        (run_dir / "record.json").write_text(json.dumps(rec))
        rows = [{"step": i, "lr": r, **({"gen/vertex": v} if v is not None else {})} for i, (r, v) in enumerate(zip(rates, vertices))]
        (run_dir / "steps.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    un, styles = plotted_runs(load_runs(root))
    series = gen_rate_series(un, styles)
    assert list(series) == [("forget10: ngdiff+gen", "gen")]  # method.lr is the color, not the panel
    cells = series[("forget10: ngdiff+gen", "gen")]
    assert sorted(cells) == [1e-4, 1e-3]
    assert cells[1e-4]["lr"].tolist() == pytest.approx([1e-4, 1.3e-4, 1.4e-4])
    assert cells[1e-4]["vertex"].to_dict() == pytest.approx({0: 6e-4, 2: 2e-4})  # the negative one dropped
    res = report(root, tmp_path / "out")
    assert tmp_path / "out" / "gen_rates.png" in res["files"]


def test_table_rows_follow_the_short_variant_ids(tmp_path):
    """Ids go by how many overrides a variant has, then by text; the rows follow the ids, not the
    override strings ('method.lr=1e-3,scheduler.cap=2' sorts before 'method.lr=3e-4')."""
    root = tmp_path / "runs"
    for variant in ("method.lr=1e-3,scheduler.cap=2", "method.lr=3e-4", "method.lr=1e-3"):
        write_record(root, "ngdiff", "forget10", 0, fq=0.1, mu=0.4, variant=variant)
    res = report(root, tmp_path / "rep")
    t = res["table"]
    assert list(t[t["method"].str.contains("ngdiff")]["variant"]) == ["v1", "v2", "v3"]
    assert res["variant_ids"] == {"method.lr=1e-3": "v1", "method.lr=3e-4": "v2", "method.lr=1e-3,scheduler.cap=2": "v3"}
    md = (tmp_path / "rep" / "table.md").read_text()
    assert md.index("| v1 |") < md.index("| v2 |") < md.index("| v3 |")


def test_a_scheduler_preset_is_its_own_row_and_directory(tmp_path):
    root = tmp_path / "runs"
    write_record(root, "ngdiff", "forget05", 100, fq=0.2, mu=0.4, scheduler="gen_calib")
    run_dir = root / "tofu_synth" / "forget05" / "tiny_llama" / "ngdiff-gen_calib" / "default" / "seed100"
    rec = json.loads((run_dir / "record.json").read_text())
    rec["config"]["scheduler"] = {"name": "gen", "label": "gen_calib", "calibrate": 5}
    (run_dir / "record.json").write_text(json.dumps(rec))
    write_record(root, "ngdiff", "forget05", 100, fq=0.1, mu=0.4, scheduler="gen")
    df = load_runs(root)
    assert sorted(df[df["model_role"] == "unlearned"]["scheduler"]) == ["gen", "gen_calib"]
    cfg = compose_cfg(["scheduler=gen_calib_cap"])
    assert cfg.scheduler.name == "gen" and cfg.scheduler.label == "gen_calib_cap" and list(cfg.scheduler.cap) == [0.5, 1.0]


def test_spread_over_initial_rates_against_the_best_fixed_rate():
    from eval.directions import DIRECTION
    from eval.report.spread import spread_table

    def cell(sched, lr, fq, fp, tr, mu):
        return {"method": "ngdiff", "scheduler": sched, "lr": lr, "split": "forget05", "forget_quality_mean": fq,
                "forget_prob_mean": fp, "forget_truth_ratio_mean": tr, "model_utility_mean": mu}

    agg = pd.DataFrame([
        cell("constant", 1e-4, 0.01, 0.50, 0.60, 0.80), cell("constant", 3e-4, 0.90, 0.10, 0.70, 0.72),
        cell("constant", 1e-3, 0.50, 0.01, 0.80, 0.30),
        cell("gen_a", 1e-4, 0.92, 0.09, 0.70, 0.74), cell("gen_a", 1e-3, 0.95, 0.08, 0.72, 0.76),
        cell("gen_b", 1e-4, 0.01, 0.50, 0.60, 0.80), cell("gen_b", 1e-3, 0.95, 0.05, 0.75, 0.70),
    ])
    spec = {"over": "lr", "baseline": "constant", "best_by": "forget_quality", "tolerance": 0.05,
            "ranges": ["model_utility", "forget_truth_ratio"], "no_worse": ["forget_quality", "forget_prob", "model_utility"]}
    t = spread_table(agg, spec, DIRECTION, ("method", "scheduler", "lr"), "split").set_index("scheduler")
    assert t.loc["constant", "goal"] == "-" and t.loc["gen_a", "baseline lr"] == 3e-4  # best FQ: 0.90 at 3e-4
    a = t.loc["gen_a"]
    assert a["model_utility range"] == pytest.approx(0.02) and a["forget_truth_ratio range"] == pytest.approx(0.02)
    assert (a["forget_quality worst"], a["forget_prob worst"], a["model_utility worst"]) == pytest.approx((0.92, 0.09, 0.74))
    assert (a["forget_quality baseline"], a["model_utility baseline"]) == pytest.approx((0.90, 0.72))
    assert a["goal"] == "met"
    b = t.loc["gen_b"]  # forgets nothing from 1e-4, and its utility moves by 0.10
    assert b["model_utility range"] == pytest.approx(0.10) and b["forget_quality worst"] == 0.01 and b["goal"] == "not met"


def test_figure_axes_colors_and_markers(tmp_path):
    from eval.directions import axis_label
    from eval.report.style import distinct_colors

    assert axis_label("model_utility_no_rouge") == "model utility (likelihoods only) ↑"
    assert axis_label("forget_quality", log=True) == "forget quality ↑ (log scale)"
    assert axis_label("privleak") == "PrivLeak →0"
    colors = distinct_colors(13)  # the 13 methods of the main tables: no two equal, no tab20 shade pairs
    assert len({tuple(c) for c in colors}) == 13
    import matplotlib

    tab20 = [matplotlib.colormaps["tab20"](i) for i in range(20)]
    pairs = {(tuple(tab20[2 * i]), tuple(tab20[2 * i + 1])) for i in range(10)}
    assert not any((tuple(a), tuple(b)) in pairs or (tuple(b), tuple(a)) in pairs for a in colors for b in colors)


def test_paired_comparison_against_a_baseline(tmp_path):
    root = tmp_path / "runs"
    for seed, (a, b) in enumerate([(0.1, 0.0), (0.3, 0.1), (0.5, 0.2)]):
        write_record(root, "ngdiff", "forget10", seed, fq=a, mu=0.5)
        write_record(root, "gdiff", "forget10", seed, fq=b, mu=0.5)
    write_record(root, "npo", "forget10", 0, fq=0.9, mu=0.4)  # one seed: a difference, no test
    res = report(root, tmp_path / "rep")
    cmp = res["compare"].set_index("method")
    # differences 0.1, 0.2, 0.3: mean 0.2, t = 0.2 / (0.1 / sqrt 3) with 2 degrees of freedom, whose
    # two-sided p-value is 1 - t / sqrt(t^2 + 2)
    t = 0.2 / (0.1 / math.sqrt(3))
    assert cmp.loc["ngdiff", "forget_quality_diff"] == pytest.approx(0.2)
    assert cmp.loc["ngdiff", "forget_quality_p"] == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    assert cmp.loc["ngdiff", "forget_quality_n"] == 3 and math.isnan(cmp.loc["ngdiff", "model_utility_p"])
    assert cmp.loc["npo", "forget_quality_diff"] == pytest.approx(0.9) and cmp.loc["npo", "forget_quality_n"] == 1
    assert "gdiff" not in cmp.index
    md = (tmp_path / "rep" / "compare.md").read_text()
    assert "against method=gdiff" in md and "| ngdiff | gen |  | forget10 | +0.200 (0.074) | +0.000 |" in md


def _page(path, *names, before="# Results\n\nSome prose.\n\n", after="\nMore prose.\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    blocks = "".join(f"<!-- report:{n} -->\nold {n}\n<!-- /report:{n} -->\n" for n in names)
    path.write_text(before + blocks + after)
    return before, after


def test_each_block_lands_in_the_page_that_holds_its_markers(tmp_path):
    from eval.report.pages import write_blocks

    docs = tmp_path / "docs"
    tofu_before, tofu_after = _page(docs / "results" / "tofu.md", "tofu_main", before="# TOFU\n\n")
    gen_before, gen_after = _page(docs / "gen.md", "gen_study", "gen_study:spread", after="\n## After\n")
    (docs / "other.md").write_text("no markers here\n")
    written = write_blocks({"gen_study": "| a |\n|---|\n| 1 |\n", "gen_study:spread": "| s |",
                            "tofu_main": "| t |"}, docs=docs)
    assert written == [docs / "gen.md", docs / "results" / "tofu.md"]
    gen = (docs / "gen.md").read_text()
    assert gen == (gen_before + "<!-- report:gen_study -->\n| a |\n|---|\n| 1 |\n<!-- /report:gen_study -->\n"
                   "<!-- report:gen_study:spread -->\n| s |\n<!-- /report:gen_study:spread -->\n" + gen_after)
    assert (docs / "results" / "tofu.md").read_text() == (
        tofu_before + "<!-- report:tofu_main -->\n| t |\n<!-- /report:tofu_main -->\n" + tofu_after)
    assert (docs / "other.md").read_text() == "no markers here\n"


def test_a_block_no_page_holds_is_one_clear_error_and_nothing_is_written(tmp_path):
    from eval.report.pages import write_blocks

    docs = tmp_path / "docs"
    _page(docs / "a.md", "smoke")
    original = (docs / "a.md").read_text()
    with pytest.raises(ValueError, match=rf"no page under {docs} holds <!-- report:smoke:spread -->"):
        write_blocks({"smoke": "| new |", "smoke:spread": "| s |"}, docs=docs)
    assert (docs / "a.md").read_text() == original  # the table's block was not written either
    # an optional block (a paired comparison) is skipped where no page holds it
    assert write_blocks({"smoke": "| new |", "smoke:compare": "| c |"}, docs=docs, optional=["smoke:compare"]) == [docs / "a.md"]
    assert "| new |" in (docs / "a.md").read_text()


def test_the_command_line_writes_into_a_docs_folder_or_one_readme(runs, tmp_path, capsys):
    from eval.report.build import main

    docs = tmp_path / "docs"
    _page(docs / "tables" / "all.md", "all")
    main([str(runs), "--out", str(tmp_path / "out"), "--docs", str(docs)])
    table = (tmp_path / "out" / "table.md").read_text().rstrip()
    assert f"<!-- report:all -->\n{table}\n<!-- /report:all -->" in (docs / "tables" / "all.md").read_text()
    assert f"updated {docs / 'tables' / 'all.md'}" in capsys.readouterr().out
    readme = tmp_path / "README.md"
    _page(readme, "all")
    main([str(runs), "--out", str(tmp_path / "out"), "--readme", str(readme)])
    assert f"<!-- report:all -->\n{table}\n<!-- /report:all -->" in readme.read_text()
    with pytest.raises(SystemExit, match=r"^error: no page under .* holds <!-- report:all -->"):
        main([str(runs), "--out", str(tmp_path / "out"), "--docs", str(tmp_path / "empty")])
