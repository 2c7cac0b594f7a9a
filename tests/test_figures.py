"""Reports a researcher can read: labels built from each run's override list (any value works),
the variant key, error bars where a mark averages seeds, colors told apart, warnings that fire on a
collapsed run and not on a healthy one, and the printed summary naming the model of each row."""
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from eval.health import RATE_FACTOR, record_warnings, utility_warning
from eval.records import RECORD_VERSION
from eval.report.build import main, report
from eval.report.figures import plotted_runs, tradeoff_figure
from eval.report.style import distinct_colors
from eval.report.tables import load_runs

matplotlib.use("Agg")

# values a command line may hold: brackets after a space, '=', commas, spaces, slashes
ODD = {"model.lora": "{r: 8, alpha: 16, target_modules: [q_proj, v_proj]}",
       "eval.retain_logs": "/data/tofu runs/ft=5,lr [2e-5]/eval_results",
       "+method.note": "a = b, c [d] e/f"}


def write_run(root, method, seed, fq, mu, scheduler="gen", task=(), lr=1e-4, steps=None, target_mu=0.5):
    """One hand-made record (``task``: its command-line overrides, as Hydra records them)."""
    run_dir = root / method / scheduler / f"v{abs(hash(task)) % 10**6}" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    variant = ",".join(o.lstrip("+") for o in sorted(task, key=lambda o: o.lstrip("+")))
    rec = {"record_version": RECORD_VERSION, "status": "ok", "seed": seed, "run_dir": str(run_dir),
           "overrides": {"task": [f"method={method}", f"seed={seed}", *task], "variant": variant},
           "config": {"dataset": {"benchmark": "tofu", "name": "tofu_synth", "split": "forget10"},
                      "model": {"name": "tiny_llama"}, "method": {"name": method, "lr": lr},
                      "scheduler": {"name": scheduler}},
           "metrics": {"unlearned": {"summary": {"forget_quality": fq, "model_utility": mu}},
                       "target": {"summary": {"forget_quality": 1e-5, "model_utility": target_mu}},
                       "retain": {"summary": {"forget_quality": 1.0, "model_utility": 0.45}}}}
    (run_dir / "record.json").write_text(json.dumps(rec))
    if steps is not None:
        (run_dir / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    return run_dir


def test_odd_override_values_make_right_labels_and_a_key(tmp_path, capsys):
    root = tmp_path / "runs"
    common = ("method.epochs=6",)
    odd = tuple(f"{k}={v}" for k, v in ODD.items())
    for seed in (0, 1):
        write_run(root, "ngdiff", seed, 0.1 + seed / 10, 0.40, task=common)
        write_run(root, "ngdiff", seed, 0.5, 0.30, task=common + odd)
        write_run(root, "gdiff", seed, 0.2, 0.35, task=common + odd[:1])
    un, styles = plotted_runs(load_runs(root))
    assert styles.common == (("method.epochs", "6"),)
    # the keys as given (a '+' prefix dropped), each value whole
    key = dict(styles.key())
    assert key == {"v1": f"model.lora={ODD['model.lora']}",
                   "v2": f"eval.retain_logs={ODD['eval.retain_logs']}, method.note={ODD['+method.note']}, "
                         f"model.lora={ODD['model.lora']}",
                   "all runs": "method.epochs=6"}
    assert sorted(set(un["label"])) == ["gdiff+gen v1", "ngdiff+gen", "ngdiff+gen v2"]
    res = report(root, tmp_path / "out")
    md = (tmp_path / "out" / "variants.md").read_text()
    assert f"| v1 | `model.lora={ODD['model.lora']}` |" in md and "| all runs | `method.epochs=6` |" in md
    assert {p.name for p in res["files"]} >= {"tradeoff_final.png", "variants.md", "table.md"}
    # the table shows the same short ids, its key beneath; table.csv and runs.csv keep the whole variant
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| ngdiff | gen | v2 |" in table and "| gdiff | gen | v1 |" in table and "| ngdiff | gen |  |" in table
    assert f"| v1 | `model.lora={ODD['model.lora']}` |" in table
    numbers, runs = (pd.read_csv(tmp_path / "out" / f) for f in ("table.csv", "runs.csv"))
    assert set(numbers["variant"].dropna()) == set(runs["variant"]) and len(set(runs["variant"])) == 3
    main([str(root), "--out", str(tmp_path / "cli")])
    printed = capsys.readouterr().out
    assert f"| v2 | `eval.retain_logs={ODD['eval.retain_logs']}" in printed and "no warnings" in printed


def test_error_bars_are_the_standard_error_of_the_seeds(tmp_path):
    import matplotlib.pyplot as plt

    root = tmp_path / "runs"
    fqs, mus = [0.1, 0.3, 0.8], [0.40, 0.44, 0.48]
    for seed, (fq, mu) in enumerate(zip(fqs, mus)):
        write_run(root, "ngdiff", seed, fq, mu)
    write_run(root, "gdiff", 0, 0.05, 0.3)  # one seed: no bars
    df = load_runs(root)
    un, styles = plotted_runs(df)
    fig = tradeoff_figure(plt, df, un, ["forget10"], ("model_utility", "forget_quality", True), styles)
    bars = {c.get_label(): c for c in fig.axes[0].containers}
    ng, gd = bars["ngdiff+gen"], bars["gdiff+gen"]
    assert ng.has_xerr and ng.has_yerr and not gd.has_xerr and not gd.has_yerr
    se = lambda v: np.std(v, ddof=1) / math.sqrt(len(v))  # noqa: E731
    xerr, yerr = ng.lines[2]  # the bar segments: x first, then y
    (x0, _), (x1, _) = xerr.get_segments()[0]
    (_, y0), (_, y1) = yerr.get_segments()[0]
    assert x1 - x0 == pytest.approx(2 * se(mus)) and y1 - y0 == pytest.approx(2 * se(fqs))
    assert (y0 + y1) / 2 == pytest.approx(np.mean(fqs))
    assert "n = 1-3 seeds" in fig._suptitle.get_text()
    refs = [c for c in fig.axes[0].collections if c.get_label() in ("target model", "retain model")]
    assert len(refs) == 2 and all(c.get_zorder() < ng.lines[0].get_zorder() for c in refs)  # beneath the methods
    plt.close(fig)


def test_fifteen_methods_get_fifteen_distinct_colors():
    colors = distinct_colors(15)
    assert colors[:10] == [tuple(matplotlib.colormaps["tab10"](i)) for i in range(10)]
    rgb = np.array([c[:3] for c in colors])
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[~np.eye(15, dtype=bool)].min() > 0.2  # no two alike (tab10's closest pair is 0.33 apart)
    assert len(distinct_colors(40)) == 40 and len({tuple(c) for c in distinct_colors(40)}) == 40


def _gen_steps(start, factor, n=4):
    """A GeN step log whose rate goes from ``start`` to ``factor`` x start (geometrically)."""
    return [{"step": i, "lr": start * factor ** (i / (n - 1)), "gen_eta": start * factor ** ((i + 1) / (n - 1))}
            for i in range(n - 1)] + [{"step": n - 1, "lr": start * factor, "gen_eta": start * factor}]


@pytest.mark.parametrize("factor,fires", [(11, True), (9, False), (1 / 11, True), (1 / 9, False)])
def test_the_rate_warning_fires_past_ten_times_either_way(factor, fires):
    rec = {"config": {"method": {"lr": 1e-4}, "dataset": {"benchmark": "tofu"}}}
    warnings = record_warnings(rec, _gen_steps(1e-4, factor))
    assert [w["kind"] for w in warnings] == (["lr_moved"] if fires else [])
    if fires:
        assert warnings[0]["factor"] == pytest.approx(11) and warnings[0]["rate"] == pytest.approx(1e-4 * factor)
        assert ("above" if factor > 1 else "below") in warnings[0]["message"]
    # without a step log, GeN's final rate in the record's summary decides
    rec["unlearn"] = {"scheduler": {"gen_eta": 1e-4 * factor}}
    assert bool(record_warnings(rec)) is fires
    assert RATE_FACTOR == 10


def test_the_utility_warning_fires_below_half_the_targets_and_names_what_fell():
    parts = ("retain_rouge", "wf_rouge", "ra_prob")
    target = {"model_utility": 0.5, "retain_rouge": 0.6, "wf_rouge": 0.8, "ra_prob": 0.4}
    low = {"model_utility": 0.0, "retain_rouge": 0.5, "wf_rouge": 0.0, "ra_prob": 0.1}
    w = utility_warning(low, target, "model_utility", parts)
    assert w["kind"] == "utility_collapse" and w["parts"] == ["wf_rouge", "ra_prob"]  # lowest ratio first
    assert "model_utility is 0, below 0.5 x the target's (0.5)" in w["message"] and "wf_rouge 0 (target 0.8)" in w["message"]
    assert utility_warning({"model_utility": 0.249}, target, "model_utility") is not None
    assert utility_warning({"model_utility": 0.251}, target, "model_utility") is None
    # MUSE: KnowMem on D_r
    rec = {"config": {"method": {"lr": 1e-3}, "dataset": {"benchmark": "muse"}},
           "metrics": {"unlearned": {"summary": {"knowmem_r": 20.0}}, "target": {"summary": {"knowmem_r": 98.0}}}}
    assert [w["metric"] for w in record_warnings(rec)] == ["knowmem_r"]
    rec["metrics"]["unlearned"]["summary"]["knowmem_r"] = 60.0
    assert record_warnings(rec) == []


def test_a_selected_rows_utility_warning_is_about_the_selected_step(tmp_path):
    """``--selected`` shows the chosen step's numbers: its warning checks that model, not the final one."""
    from eval.records import write_record
    from eval.report.tables import record_rows

    target = {"knowmem_r": 98.0}
    rec = {"status": "ok", "seed": 0, "config": {"method": {"name": "ga", "lr": 1e-3}, "dataset": {"benchmark": "muse"}},
           "metrics": {"unlearned": {"summary": {"knowmem_r": 20.0}}, "target": {"summary": target}},
           "selection": {"step": 4, "metrics": {"step": 4, "knowmem_r": 90.0}}}
    rec["warnings"] = record_warnings(rec)  # what the run stored: the final model collapsed
    write_record(tmp_path, rec)
    final, = [r for r in record_rows(tmp_path / "record.json") if r["model_role"] == "unlearned"]
    chosen, = [r for r in record_rows(tmp_path / "record.json", selected=True) if r["model_role"] == "unlearned"]
    assert final["warnings"] == "utility_collapse" and "the unlearned model's knowmem_r is 20" in final["warning_messages"]
    assert chosen["warnings"] == "" and chosen["selected_step"] == 4
    rec["selection"]["metrics"]["knowmem_r"] = 30.0  # the chosen step collapsed too: said of that step
    write_record(tmp_path, rec)
    chosen, = [r for r in record_rows(tmp_path / "record.json", selected=True) if r["model_role"] == "unlearned"]
    assert "the selected model (step 4)'s knowmem_r is 30" in chosen["warning_messages"]


def test_reports_count_and_list_the_warnings(tmp_path, capsys):
    root = tmp_path / "runs"
    write_run(root, "ngdiff", 0, 0.9, 0.1, steps=_gen_steps(1e-4, 70))  # collapsed, the rate moved 70x
    write_run(root, "ngdiff", 1, 0.2, 0.45, steps=_gen_steps(1e-4, 2))  # healthy
    write_run(root, "gdiff", 0, 0.2, 0.45, scheduler="constant", task=(f"model.lora={ODD['model.lora']}",))
    main([str(root), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "Warnings: 1 of 3 runs" in printed and "GeN moved the learning rate 70x above its start" in printed
    table = (tmp_path / "out" / "table.md").read_text()
    assert "Warnings: 1 of 3 runs" in table and "model_utility is 0.1, below 0.5 x the target's (0.5)" in table
    numbers = pd.read_csv(tmp_path / "out" / "table.csv")
    per_row = numbers[numbers["status"] != "reference"].set_index("method")["n_warnings"]
    assert per_row.to_dict() == {"gdiff": 0, "ngdiff": 1}


def test_the_printed_summary_names_the_final_and_the_selected_model():
    from unlearn.run_report import selection_line, summary_table

    summary = {"forget_quality": 0.9, "model_utility": 0.1}
    rec = {"config": {"dataset": {"benchmark": "tofu"}}, "unlearn": {"steps": 6},
           "metrics": {"target": {"summary": {"forget_quality": 1e-5, "model_utility": 0.5}},
                       "unlearned": {"summary": summary}},
           "selection": {"step": 0, "final_step": 6, "criterion": "max forget_quality", "metric": "forget_quality",
                         "metrics": {"step": 0, "forget_quality": 1e-5, "model_utility_no_rouge": 0.6}}}
    lines = summary_table(rec).splitlines()
    assert [ln.split("  ")[0] for ln in lines[1:]] == ["target", "unlearned (final, step 6)", "selected (step 0)"]
    assert lines[3].split()[3:5] == ["1e-05", "-"]  # no model_utility in the trajectory: "-"
    assert "step 0 is the target before any update" in selection_line(rec["selection"])
    rec["selection"] = {"step": None, "criterion": "max forget_quality", "note": "no trajectory step met the floor"}
    assert summary_table(rec).splitlines()[2].startswith("unlearned (final, step 6)")
    del rec["selection"]
    assert summary_table(rec).splitlines()[2].startswith("unlearned ")


def test_step_curves_have_a_row_per_task_one_legend_entry_per_series_and_trajectories_a_direction(tmp_path):
    import matplotlib.pyplot as plt

    from eval.report.figures import CURVES, _run_series, curve_figure, trajectory_figure

    root = tmp_path / "runs"
    for seed in (0, 1):
        for method in ("ngdiff", "gdiff"):
            steps = [{"step": i, "lr": 1e-4, "loss/forget": 1.0 + i + seed, "loss/retain": 1e-3 * 10 ** (2 * i / 3)} for i in range(4)]
            run_dir = write_run(root, method, seed, 0.1, 0.4, steps=steps)
            rec = json.loads((run_dir / "record.json").read_text())
            rec["trajectory"] = [{"step": i, "model_utility": 0.5 - 0.05 * i, "forget_quality": 1e-5 * 10 ** i}
                                 for i in range(4)]
            (run_dir / "record.json").write_text(json.dumps(rec))
    un, styles = plotted_runs(load_runs(root))
    traj, curves = _run_series(un, ["forget10"], "model_utility", "forget_quality")
    ylabel, _, log = CURVES["loss"]
    fig = curve_figure(plt, curves["loss"], ["forget10"], un, (ylabel, log), styles)
    assert [ax.get_title() for ax in fig.axes] == ["forget10 - forget task", "forget10 - retain task"]
    assert fig.axes[1].get_yscale() == "log" and fig.axes[0].get_yscale() == "linear"  # 1e-3 to 0.1 vs 1 to 5
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["gdiff+gen", "ngdiff+gen"]  # not one per task
    band = fig.axes[0].collections[0].get_paths()[0].vertices[:, 1]  # seeds 1 apart: s.e. 0.5 around the mean
    assert band.min() == pytest.approx(1.5 - 0.5) and band.max() == pytest.approx(4.5 + 0.5)
    plt.close(fig)
    fig = trajectory_figure(plt, traj, ["forget10"], un, "forget_quality", True, styles)
    arrows = [t for t in fig.axes[0].texts if t.arrow_patch is not None]
    assert len(arrows) == 2 * 2  # two arrowheads per series, pointing from step i to i + 1
    assert arrows[0].xy[0] < arrows[0].xyann[0]  # utility falls along the way: the arrow points left
    assert "start (step 0: the target)" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)


def test_a_multirun_line_counts_the_jobs_with_warnings():
    from unlearn.sweep_summary import summary_line

    rows = [{"status": "ok", "run_dir": "a", "warnings": 2}, {"status": "ok", "run_dir": "b", "warnings": 0},
            {"status": "failed", "run_dir": "c"}]
    assert summary_line(rows) == ("multirun: 3 jobs: 2 ok, 0 diverged, 1 failed, 0 interrupted, 0 skipped; "
                                  "1 with warnings (printed under their tables, in their records); failed: c")
