"""GeN's options (issue 13), each on a synthetic loss whose answer is known: the least-squares fit
and its R^2, calibration, caps, the bound and phase reported, fresh probe batches, eval-mode
probes; and that the official settings stay available by name."""
import json

import numpy as np
import pytest
from omegaconf import OmegaConf
import torch

from tests.conftest import compose_cfg
from tests.tiny import tiny_llama, varied_features
from unlearn.batching import PairedBatches
from unlearn.engine import unlearn
from unlearn.gen import GeN, fit_parabola
from unlearn.methods import build_method
from unlearn.schedulers import build_scheduler


def quad(h, x0):
    return lambda x: 0.5 * h * (x - x0) ** 2


def probe_points(f, w, g, eta, ratios):
    """Plain GD (delta = -eta g): L0 and L(w + r delta) for each ratio."""
    return f(w), {r: f(w - r * eta * g) for r in ratios}


def test_least_squares_fit_and_r2_against_numpy():
    xs = [-2.0, -1.0, 1.0, 2.0]
    exact = [0.5 * 3.0 * x * x - 1.5 * x for x in xs]  # a = 3, b = 1.5
    a, b, r2 = fit_parabola(xs, exact)
    assert (a, b, r2) == pytest.approx((3.0, 1.5, 1.0))
    noisy = [y + e for y, e in zip(exact, [0.3, -0.2, 0.1, -0.4])]
    a, b, r2 = fit_parabola(xs, noisy)
    design = np.array([[x * x / 2, -x] for x in xs])
    (a_np, b_np), *_ = np.linalg.lstsq(design, np.array(noisy), rcond=None)
    y_all = np.array([0.0, *noisy])
    fitted = np.array([0.0, *(design @ [a_np, b_np])])
    r2_np = 1 - ((y_all - fitted) ** 2).sum() / ((y_all - y_all.mean()) ** 2).sum()  # sklearn's r2_score
    assert (a, b, r2) == pytest.approx((a_np, b_np, r2_np), rel=1e-12)
    assert r2 < 1.0
    with pytest.raises(ValueError, match="two or more distinct"):
        fit_parabola([1.0, 1.0], [0.1, 0.1])


def test_five_point_probe_recovers_the_vertex_and_min_r2_rejects_a_bad_fit():
    h, w = 4.0, 3.0
    g = h * w
    sched = GeN(0.05, 100, {"ema": 0.0, "points": [-2, -1, 1, 2], "min_r2": 0.99})
    fit = sched.observe_points(0, *probe_points(quad(h, 0.0), w, g, 0.05, sched.points), eta=0.05)
    assert fit.accepted and fit.r2 == pytest.approx(1.0) and fit.vertex == pytest.approx(1 / h)
    assert set(fit.losses) == {"l0", "l_step", "l_back", "l_2", "l_-2"}
    # a quartic wall: far from a parabola over the probed range
    quartic = lambda x: x ** 4  # noqa: E731
    sched = GeN(0.05, 100, {"ema": 0.0, "points": [-2, -1, 1, 2], "min_r2": 0.99})
    fit = sched.observe_points(0, *probe_points(quartic, 1.0, 4.0, 0.3, sched.points), eta=0.3)
    assert not fit.accepted and fit.reason == "r2<min_r2" and fit.r2 < 0.99 and sched.eta == 0.05


def test_the_raw_vertex_and_the_bound_are_reported():
    h = 0.01  # vertex 100 x the rate: clipped to 2x
    sched = GeN(1.0, 100, {})
    fit = sched.observe(0, *[quad(h, 0.0)(x) for x in (1.0, 1.0 - h, 1.0 + h)], eta=1.0)
    assert fit.vertex == pytest.approx(100.0) and fit.candidate == pytest.approx(2.0) and fit.bound == "clip_high"
    sched = GeN(1.0, 100, {})
    h = 100.0
    fit = sched.observe(0, *[quad(h, 0.0)(x) for x in (1.0, 1.0 - h, 1.0 + h)], eta=1.0)
    assert fit.vertex == pytest.approx(0.01) and fit.bound == "clip_low" and fit.phase == "steady"


def test_calibration_jumps_to_the_vertex_then_steady_safeguards_and_caps():
    """A quadratic whose best rate is 1/h = 0.1 from an initial 1e-3 (100x too small): calibration
    (every step, wide clip, no EMA) lands on it at the first probe; the steady phase then probes
    lazily under the caps relative to the calibrated rate."""
    h = 10.0
    f = quad(h, 0.0)
    sched = GeN(1e-3, 100, {"calibrate": 3, "calib_clip": [0.01, 1000.0], "lazy": 4, "cap": [0.5, 1.5],
                            "ema": 0.9})
    assert [s for s in range(10) if sched.should_probe(s)] == [0, 1, 2, 4, 8]
    w = 5.0
    fit = sched.observe_points(0, *probe_points(f, w, h * w, 1e-3, sched.points), eta=1e-3)
    assert fit.phase == "calibrate" and fit.bound == "" and sched.eta == pytest.approx(0.1)
    sched.observe_points(1, *probe_points(f, 2.0, h * 2.0, sched.eta, sched.points), eta=sched.eta)
    sched.observe_points(2, *probe_points(f, 1.0, h * 1.0, sched.eta, sched.points), eta=sched.eta)
    assert sched.eta == pytest.approx(0.1) and sched.eta_cal is None
    # steady: a softer curvature sends the vertex to 100x; clip 2x and the EMA creep up until the cap holds
    soft = quad(h / 100, 0.0)
    for step in (4, 8, 12, 16, 20):
        fit = sched.observe_points(step, *probe_points(soft, 1.0, h / 100, sched.eta, sched.points), eta=sched.eta)
        assert fit.phase == "steady"
    assert sched.eta_cal == pytest.approx(0.1)
    assert sched.eta == pytest.approx(0.15) and fit.bound == "cap_high"


def test_a_calibration_clip_stops_a_runaway_vertex():
    sched = GeN(1e-3, 100, {"calibrate": 1, "calib_clip": [0.1, 10.0]})
    fit = sched.observe_points(0, *probe_points(quad(1e-3, 0.0), 1.0, 1e-3, 1e-3, sched.points), eta=1e-3)
    assert fit.vertex == pytest.approx(1000.0, rel=1e-3) and sched.eta == pytest.approx(1e-2) and fit.bound == "clip_high"


def test_bad_gen_options_fail_clearly():
    for cfg, msg in (({"points": [0, 1]}, "non-zero"), ({"points": [1]}, "two or more"),
                     ({"probe_batch": "next"}, "probe_batch must be one of step, fresh"),
                     ({"cap": [2.0, 3.0]}, "gen.cap must satisfy"), ({"calibrate": -1}, "calibrate must be >= 0")):
        with pytest.raises(ValueError, match=msg):
            GeN(1.0, 10, cfg)


def test_fresh_probe_batches_leave_the_training_batches_alone():
    forget, retain = varied_features(10, 1), varied_features(20, 2)
    plain = PairedBatches(forget, retain, 4, seed=3)
    probing = PairedBatches(forget, retain, 4, seed=3)
    steps_plain = [[(m.forget, m.retain) for m in s] for s in plain.steps(0, 2)]
    steps_probing = []
    fresh = []
    for s in probing.steps(0, 2):
        steps_probing.append([(m.forget, m.retain) for m in s])
        fresh.append([(m.forget, m.retain) for m in probing.fresh(2)])
    assert steps_probing == steps_plain
    assert all(len(f) == 2 and all(len(a) == 2 and len(b) == 2 for a, b in f) for f in fresh)
    assert len({json.dumps(f) for f in fresh}) == len(fresh)  # a new batch at every probe
    assert [[(m.forget, m.retain) for m in PairedBatches(forget, retain, 4, seed=3).fresh(2)]] == fresh[:1]


def _engine(tmp_path, sched_cfg, model=None):
    cfg = {"name": "ngdiff", "eps": 1e-8, "lr": 3e-3, "epochs": 1, "batch_size": 4, "optimizer": "adamw",
           "weight_decay": 0.0}
    path = tmp_path / "steps.jsonl"
    model = model or tiny_llama()
    res = unlearn(model, build_method(cfg), lambda t, e: build_scheduler({"name": "gen", **sched_cfg}, cfg["lr"], t, e),
                  varied_features(12, 1), varied_features(30, 2), cfg, pad_id=0, seed=5, log_path=path)
    return res, [json.loads(x) for x in path.read_text().splitlines()]


def test_engine_probes_on_the_step_batch_or_a_fresh_one(tmp_path):
    res, rows = _engine(tmp_path, {"lazy": 1, "probe_batch": "step"})
    assert res.status == "ok"
    for r in rows:  # the step's own batch: L0 is the step's retain loss
        assert r["gen/l0"] == pytest.approx(r["loss/retain"], rel=1e-6)
        assert {"gen/vertex", "gen/r2", "gen/bound", "gen/phase"} <= set(r)
    res, fresh = _engine(tmp_path, {"lazy": 1, "probe_batch": "fresh"})
    assert res.status == "ok"
    assert all(abs(r["gen/l0"] - r["loss/retain"]) > 1e-6 for r in fresh)  # measured at w0 on another batch
    assert fresh[0]["loss/retain"] == pytest.approx(rows[0]["loss/retain"], rel=1e-6)  # the same training data


def test_engine_probes_in_eval_mode_when_asked(tmp_path):
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_llama()

        def forward(self, *a, **k):
            seen.append(self.training)
            return self.inner(*a, **k)

    res, rows = _engine(tmp_path, {"lazy": 100, "probe_eval": True}, model=Spy())
    assert res.status == "ok" and "gen/a" in rows[0]
    train_passes, probe_passes = seen.count(True), seen.count(False)
    assert probe_passes == 2  # the two probes of step 0 (L0 reused from the step)
    seen.clear()
    _engine(tmp_path, {"lazy": 100, "probe_eval": False}, model=Spy())
    assert seen.count(False) == 0 and seen.count(True) == train_passes + probe_passes


def test_official_settings_by_name():
    cfg = compose_cfg(["scheduler=gen_official"])
    s = cfg.scheduler
    assert s.name == "gen" and s.probe_batch == "fresh" and list(s.points) == [-1, 1] and s.min_r2 == 0.99
    assert (s.lazy, s.ema, list(s.clip), s.on_reject, s.horizon, s.calibrate, s.cap) == (4, 0.9, [0.5, 2.0], "keep",
                                                                                          False, 0, None)
    assert s.trial_probe is False


def test_default_is_the_study_choice_and_the_previous_default_has_a_name():
    """scheduler=gen resolves to the study's chosen row (gen_calib_trial) key for key; gen_ema keeps
    the pre-study default (official safeguards on the step's batch, nothing else)."""
    resolved = lambda o: OmegaConf.to_container(compose_cfg(o).scheduler, resolve=True)
    default, chosen = resolved([]), resolved(["scheduler=gen_calib_trial"])
    assert chosen.pop("label") == "gen_calib_trial" and "label" not in default and default == chosen
    assert (default["calibrate"], default["trial_probe"], default["horizon"]) == (5, True, True)
    ema = resolved(["scheduler=gen_ema"])
    assert (ema["calibrate"], ema["trial_probe"], ema["horizon"], ema["lazy"], ema["ema"], ema["probe_batch"]) == (
        0, False, False, 4, 0.9, "step")


@pytest.mark.parametrize("overrides,lr", [([], 3e-4), (["dataset=muse_synth"], 1e-3), (["dataset=tofu"], 1e-5),
                                          (["debug=tiny"], 1e-4), (["method.lr=2e-4"], 2e-4),
                                          (["method=gdiff", "scheduler=constant"], 3e-4)])
def test_default_rate_is_the_datasets(overrides, lr):
    assert compose_cfg(overrides).method.lr == pytest.approx(lr)


def test_vertex_scale_aims_short_of_the_minimizer():
    h = 10.0  # vertex 0.1; half of it, straight (calibration: no EMA)
    sched = GeN(1e-2, 100, {"calibrate": 1, "vertex_scale": 0.5})
    fit = sched.observe_points(0, *probe_points(quad(h, 0.0), 2.0, h * 2.0, 1e-2, sched.points), eta=1e-2)
    assert fit.vertex == pytest.approx(0.1) and sched.eta == pytest.approx(0.05)
    with pytest.raises(ValueError, match="vertex_scale must be positive"):
        GeN(1.0, 10, {"vertex_scale": 0.0})


def test_trial_probe_takes_the_first_update_at_the_fitted_rate(tmp_path):
    """The trial step is undone (weights and AdamW state): the run's first update is exactly a
    fixed-rate update at the rate the trial probe found."""
    cfg = {"name": "ngdiff", "eps": 1e-8, "lr": 1e-5, "epochs": 1, "batch_size": 4, "optimizer": "adamw",
           "weight_decay": 0.01, "max_steps": 1}
    forget, retain = varied_features(12, 1), varied_features(30, 2)

    def run(sched_cfg, lr, name):
        model = tiny_llama()
        path = tmp_path / f"{name}.jsonl"
        res = unlearn(model, build_method({**cfg, "lr": lr}),
                      lambda t, e: build_scheduler(sched_cfg, lr, t, e), forget, retain, {**cfg, "lr": lr},
                      pad_id=0, seed=5, log_path=path)
        return model, [json.loads(x) for x in path.read_text().splitlines()], res

    gen, rows, res = run({"name": "gen", "calibrate": 1, "trial_probe": True, "lazy": 100}, 1e-5, "trial")
    assert res.status == "ok" and rows[0]["trial/accepted"] and rows[0]["trial/phase"] == "calibrate"
    fitted = rows[0]["lr"]
    # the vertex, within calib_clip's 100 x the initial rate
    assert fitted != 1e-5 and fitted == pytest.approx(min(rows[0]["trial/vertex"], 100 * 1e-5), rel=1e-9)
    fixed, frows, _ = run({"name": "constant"}, fitted, "fixed")
    assert frows[0]["lr"] == fitted
    for (n, p), (_, q) in zip(gen.named_parameters(), fixed.named_parameters()):
        assert torch.equal(p, q), n
    # without the option the first update is taken at the initial rate
    _, plain, _ = run({"name": "gen", "calibrate": 1, "lazy": 100}, 1e-5, "plain")
    assert plain[0]["lr"] == 1e-5 and not any(k.startswith("trial/") for k in plain[0])
