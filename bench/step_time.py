"""Step time of NGDiff vs GDiff, and of GeN vs a fixed rate, on the same batches.

    python bench/step_time.py [--steps 40] [--repeats 5]

Every variant runs the real engine (``unlearn.engine.unlearn``) on identical batches (same seed)
from the same initial weights of the default tiny Llama; variants are interleaved and repeated,
and the median per-step time is reported. Targets (issue 2): NGDiff / GDiff <= 1.10,
GeN (lazy 4) / NGDiff fixed <= 1.25; issue 13: the study's GeN presets (composed from
``conf/scheduler/<preset>.yaml``: a calibration phase probes every step, ``gen_official`` measures L0
on a fresh batch) amortized over a run, also <= 1.25.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unlearn.engine import unlearn  # noqa: E402
from unlearn.methods import build_method  # noqa: E402
from unlearn.models import build_tiny_llama  # noqa: E402
from unlearn.schedulers import build_scheduler  # noqa: E402

ARCH = {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
        "max_position_embeddings": 256}  # conf/model/tiny_llama.yaml


class _Tok:  # what build_tiny_llama reads from a tokenizer
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 2048


def features(n: int, seed: int, length: int = 40, prompt: int = 15):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(4, 2048, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * length, "labels": [-100] * prompt + ids[prompt:]})
    return out


VARIANTS = {
    # name: (method cfg, scheduler cfg)
    "gdiff (one gradient)": ({"name": "gdiff", "retain_weight": 1.0, "forget_weight": 1.0, "task_grad_stats": False}, {"name": "constant"}),
    "gdiff (per-task grads)": ({"name": "gdiff", "retain_weight": 1.0, "forget_weight": 1.0}, {"name": "constant"}),
    "ngdiff (fixed lr)": ({"name": "ngdiff", "eps": 1e-8}, {"name": "constant"}),
    "ngdiff + gen (lazy 4)": ({"name": "ngdiff", "eps": 1e-8}, {"name": "gen", "lazy": 4}),
}
PRESETS = ("gen_calib_trial", "gen_official")  # GeN settings studied in issue 13, exactly as configured


def preset(name: str) -> dict:
    from omegaconf import OmegaConf

    from unlearn.config import compose_config

    return OmegaConf.to_container(compose_config([f"scheduler={name}"]).scheduler, resolve=True)


VARIANTS.update({f"ngdiff + {p}": ({"name": "ngdiff", "eps": 1e-8}, preset(p)) for p in PRESETS})


def bench_setup(default_steps: int, default_batch: int = 8):
    """The step benches' shared start: ``--steps/--repeats/--batch-size``, the initial tiny Llama,
    ``steps x batch`` forget features and 400 retain features, all seeded."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=default_steps)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=default_batch)
    args = ap.parse_args()
    torch.manual_seed(0)
    base = build_tiny_llama(ARCH, _Tok(), seed=0)
    return args, base, features(args.steps * args.batch_size, seed=1), features(400, seed=2)


def main() -> None:
    args, base, forget, retain = bench_setup(default_steps=40)
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats + 1):  # repeat 0 warms up and is discarded
            for name, (mcfg, scfg) in VARIANTS.items():
                cfg = {"lr": 1e-4, "epochs": 1, "batch_size": args.batch_size, "optimizer": "adamw",
                       "weight_decay": 0.01, **mcfg}
                res = unlearn(copy.deepcopy(base), build_method(cfg),
                              lambda total, e, s=scfg: build_scheduler(s, 1e-4, total, e), forget, retain, cfg,
                              pad_id=0, seed=0, log_path=Path(tmp) / "steps.jsonl")
                if rep:
                    times[name].append(res.seconds / res.steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{'variant':<26}{'ms/step':>10}")
    for k, v in med.items():
        print(f"{k:<26}{1e3 * v:>10.2f}")
    print()
    print(f"ratio ngdiff / gdiff (one gradient)       = {med['ngdiff (fixed lr)'] / med['gdiff (one gradient)']:.3f}  (target <= 1.10)")
    print(f"ratio ngdiff / gdiff (per-task grads)     = {med['ngdiff (fixed lr)'] / med['gdiff (per-task grads)']:.3f}")
    print(f"ratio gen lazy4 / ngdiff fixed lr         = {med['ngdiff + gen (lazy 4)'] / med['ngdiff (fixed lr)']:.3f}  (target <= 1.25)")
    for p in PRESETS:
        print(f"ratio {p} / ngdiff fixed lr{' ' * (17 - len(p))}= {med[f'ngdiff + {p}'] / med['ngdiff (fixed lr)']:.3f}"
              f"  (target <= 1.25; {args.steps} steps)")


if __name__ == "__main__":
    main()
