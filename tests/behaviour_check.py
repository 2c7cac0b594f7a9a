"""Bit-identical behaviour across a refactor: the debug world's runs on another commit and on the
working tree, compared value for value.

    python tests/behaviour_check.py                   # against the commit before issue 23's moves
    python tests/behaviour_check.py --ref HEAD~3      # against any commit
    python tests/behaviour_check.py --produce DIR     # only write this tree's digest into DIR

Each side runs in its own process from its own tree (the reference in a temporary ``git worktree``)
with its own stage cache, so nothing built by one side is read by the other. The runs cover several
methods, GeN and a constant rate, TOFU and MUSE, gradient accumulation and clipping, bf16-mixed and
fp16 loss scaling, trajectory evaluation with checkpoint selection and open-unlearning's files, and a
run killed at step 5 and resumed. The digest holds, per run: every step row (less its wall time), the
record's metrics, logs, trajectory, selection and unlearning summary, and the SHA-256 of every file of
every checkpoint and of open-unlearning's files. Exits 1 and prints each difference when any value
differs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "ac88f8f"  # main before issue 23 moved the loop, the run and eval/ (2026-12-04)

TOFU = ("method.epochs=2",)
MUSE = ("dataset=muse_synth", "eval=muse")
RUNS: dict[str, tuple[str, ...]] = {
    "tofu_ngdiff_gen_select": (*TOFU, "method=ngdiff", "scheduler=gen", "method.epochs=4", "eval.trajectory_every=2",
                               "eval.select=max:forget_prob", "eval.select_save_final=true", "eval.ou_logs=true"),
    "tofu_gdiff_constant": (*TOFU, "method=gdiff", "scheduler=constant"),
    "tofu_npo_accum_clip": (*TOFU, "method=ngdiff", "method.forget_loss=npo", "scheduler=constant",
                            "method.batch_size=2", "method.grad_accum_steps=2", "method.max_grad_norm=0.5"),
    "tofu_pdu": (*TOFU, "method=pdu", "scheduler=constant"),
    "tofu_rmu": (*TOFU, "method=rmu", "scheduler=constant"),
    "tofu_mgda_summed_gen": (*TOFU, "method=gdiff", "scheduler=gen", "method.task_grad_stats=false"),
    "tofu_bf16_mixed_gen": (*TOFU, "method=ngdiff", "scheduler=gen", "model.precision=bf16-mixed"),
    "tofu_fp16_scaler": (*TOFU, "method=gdiff", "scheduler=constant", "model.precision=16-mixed"),
    "tofu_ga_diverged": (*TOFU, "method=ga", "scheduler=constant", "method.lr=1e6"),
    "muse_ngdiff_gen": (*MUSE, "method=ngdiff", "scheduler=gen", "eval.trajectory_every=2", "eval.ou_logs=true"),
    "muse_gdiff_constant": (*MUSE, "method=gdiff", "scheduler=constant"),
}
RESUMED = (*TOFU, "method=ngdiff", "scheduler=gen", "method.epochs=8", "resume_every=2", "eval.trajectory_every=3",
           "eval.select=min:forget_prob")
RECORD_KEYS = ("status", "metrics", "trajectory", "selection", "unlearn", "checkpoint", "checkpoint_final", "ou_logs",
               "reference", "seed")
VOLATILE = {"seconds", "time"}  # wall-clock values


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def digest(run_dir: Path) -> dict:
    record = json.loads((run_dir / "record.json").read_text())
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    out = {"record": _strip({k: record.get(k) for k in RECORD_KEYS}), "steps": _strip(steps),
           "error": {k: (record.get("error") or {}).get(k) for k in ("type", "message")}}
    for sub in ("checkpoint", "checkpoint_final", "open_unlearning"):
        if (run_dir / sub).is_dir():
            out[sub] = _files(run_dir / sub)
    return out


def produce(out: Path) -> None:
    """Every run of this tree (the working directory), its digest into ``out/digest.json``."""
    sys.path.insert(0, os.getcwd())
    from unlearn.config import compose_config
    from unlearn.pipeline import run
    import unlearn.trackers

    def cfg(*overrides):
        return compose_config(["debug=tiny", f"paths.root={out / 'outputs'}", f"paths.cache={out / 'cache'}",
                               *overrides])

    result = {}
    for name, overrides in RUNS.items():
        print(f"[behaviour] {name}", flush=True)
        rec = run(cfg(*overrides), run_dir=out / "runs" / name)
        # lr 1e6: the loss stays finite, the weights do not (the evaluation fails on NaN log-probabilities)
        assert rec["status"] in (("diverged", "failed") if "diverged" in name else ("ok",)), (name, rec.get("error"))
        result[name] = digest(out / "runs" / name)
    print("[behaviour] resumed", flush=True)
    real = unlearn.trackers.RunTracker.step

    def dies_at_step_5(self, row):
        if row["step"] == 5:
            raise RuntimeError("killed")
        real(self, row)

    unlearn.trackers.RunTracker.step = dies_at_step_5
    broken = run(cfg(*RESUMED), run_dir=out / "runs" / "resumed")
    unlearn.trackers.RunTracker.step = real
    assert broken["status"] == "failed", broken["status"]
    rec = run(cfg(*RESUMED), run_dir=out / "runs" / "resumed")
    assert rec["status"] == "ok" and rec["unlearn"]["resumed_from"] == 4, rec.get("unlearn")
    result["resumed"] = digest(out / "runs" / "resumed")
    (out / "digest.json").write_text(json.dumps(result, indent=1, sort_keys=True))


def side(tree: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--produce", str(out)], cwd=tree, env=env, check=True)
    return json.loads((out / "digest.json").read_text())


def differences(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a.get(k), b.get(k), f"{path}/{k}") if k in a and k in b
                          else [f"{path}/{k}: only in {'reference' if k in a else 'this tree'}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: reference {a!r} != this tree {b!r}"[:400]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", default=BEFORE, help="the commit to compare against (default: %(default)s)")
    ap.add_argument("--produce", type=Path, help="only write this tree's digest into this folder")
    args = ap.parse_args()
    if args.produce:
        produce(args.produce)
        return 0
    with tempfile.TemporaryDirectory(prefix="behaviour-") as tmp:
        tmp = Path(tmp)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tmp / "ref"), args.ref], check=True)
        try:
            ref = side(tmp / "ref", tmp / "ref_out")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "ref")], check=False)
        now = side(ROOT, tmp / "now_out")
    diffs = differences(ref, now)
    for d in diffs:
        print(d)
    print(f"{len(ref)} runs, {sum(len(v['steps']) for v in ref.values())} step rows: "
          + ("bit-identical" if not diffs else f"{len(diffs)} differences"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
