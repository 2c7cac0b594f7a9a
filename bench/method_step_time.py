"""Step time of every registered method (and of NGDiff with other methods' forget objectives as its
forget task) relative to GDiff, on the same batches.

    python bench/method_step_time.py [--steps 20] [--repeats 5] [--batch-size 8]

As ``bench/step_time.py``: the real engine (``unlearn.engine.unlearn``) with each method's own
defaults from ``conf/method/*.yaml`` (so scalarizations also compute per-task gradients for their
logs, ``task_grad_stats: true``), identical batches (same seed) from the same initial weights of
the default tiny Llama, a fixed learning rate, methods interleaved (in a rotated order) and
repeated, median per-step time. ``setup`` is the one-off cost before the first step (the reference model's scoring of the
forget set for NPO / IDK-DPO, IDK answer encoding), measured once per repeat outside the step time.
"""
from __future__ import annotations

import copy
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_time import bench_setup, features  # noqa: E402  (same model and synthetic batches)
from unlearn.config import CONFIG_DIR  # noqa: E402
from unlearn.engine import unlearn  # noqa: E402
from unlearn.methods import METHODS, MethodContext, build_method  # noqa: E402
from unlearn.models import frozen  # noqa: E402
from unlearn.schedulers import build_scheduler  # noqa: E402


# a direction method with another method's forget objective as its forget task (method.forget_loss)
COMBINATIONS = {"ngdiff+npo": ("ngdiff", "npo"), "ngdiff+undial": ("ngdiff", "undial"), "ngdiff+rmu": ("ngdiff", "rmu")}


def method_cfgs(names, batch_size: int) -> dict[str, dict]:
    """Each method's composed config node (its yaml defaults), with the bench's batch and rate."""
    out = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name in names:
            method, forget = COMBINATIONS.get(name, (name, None))
            overrides = [f"method={method}"] + ([f"method.forget_loss={forget}"] if forget else [])
            node = OmegaConf.to_container(compose(config_name="config", overrides=overrides).method)
            out[name] = {**node, "lr": 1e-4, "epochs": 1, "batch_size": batch_size, "max_steps": None}
    return out


def main() -> None:
    args, base, forget, retain = bench_setup(default_steps=20)
    rows = [{"question": f"q{i}", "answer": f"a{i}", "index": i} for i in range(len(forget))]

    def encode(row, answer, prefix_tokens):
        """A row's own answer: its forget feature; an IDK answer: a shorter synthetic QA text, fixed
        per (question, answer)."""
        if answer is None:
            return forget[row["index"]]
        return features(1, seed=zlib.crc32(f"{row['question']}\0{answer}".encode()), length=30)[0]

    ctx = MethodContext(
        encode=encode,
        forget_rows=rows, retain_rows=rows, forget_features=forget, retain_features=retain, pad_id=0,
        device=torch.device("cpu"), load_reference=lambda: frozen(copy.deepcopy(base)),
    )
    names = ["gdiff"] + [n for n in METHODS if n != "gdiff"] + list(COMBINATIONS)
    cfgs = method_cfgs(names, args.batch_size)
    step: dict[str, list[float]] = {n: [] for n in names}
    setup: dict[str, list[float]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats + 1):  # repeat 0 warms up and is discarded
            for name in names[rep % len(names):] + names[: rep % len(names)]:  # rotated: no order bias
                cfg = cfgs[name]
                t0 = time.perf_counter()
                res = unlearn(copy.deepcopy(base), build_method(cfg),
                              lambda total, e: build_scheduler({"name": "constant"}, 1e-4, total, e), forget, retain, cfg,
                              pad_id=0, seed=0, log_path=Path(tmp) / "steps.jsonl", context=ctx)
                if rep:
                    step[name].append(res.seconds / res.steps)
                    setup[name].append(time.perf_counter() - t0 - res.seconds)
    med = {n: statistics.median(v) for n, v in step.items()}
    print(f"{'method':<14}{'kind':>15}{'ms/step':>10}{'/ gdiff':>9}{'setup s':>9}")
    for n in names:
        kind = "direction" if build_method(cfgs[n]).weights() is None else "scalarization"
        print(f"{n:<14}{kind:>15}{1e3 * med[n]:>10.1f}{med[n] / med['gdiff']:>9.2f}{statistics.median(setup[n]):>9.2f}")


if __name__ == "__main__":
    main()
