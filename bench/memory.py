"""Peak memory of an unlearning step: NGDiff's per-task gradients vs GDiff's one backward, with and
without gradient accumulation, and with GeN's probes.

    python bench/memory.py [--hidden 512] [--layers 8] [--steps 3]

Each variant runs the real engine for a few steps in a fresh process on a ~35M-parameter Llama
with short sequences (so that gradient-sized buffers, not activations, set the peak); its peak
resident memory above
the process's memory once the model is built is reported in MB and in units of P, the size of
the trainable parameters in fp32. The baseline is GDiff's one backward of L_R - L_F (TOFU's
``grad_diff``): gradient P + AdamW's two moments 2P. NGDiff needs each task's gradient (one
buffer per task, the direction formed in place over the last): one P more.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GDIFF = {"name": "gdiff", "retain_weight": 1.0, "forget_weight": 1.0}
VARIANTS = {
    "gdiff (one gradient)": ({**GDIFF, "task_grad_stats": False}, 1, {"name": "constant"}),
    "gdiff (per-task grads)": (GDIFF, 1, {"name": "constant"}),
    "ngdiff": ({"name": "ngdiff", "eps": 1e-8}, 1, {"name": "constant"}),
    "gdiff (one gradient), accum 4": ({**GDIFF, "task_grad_stats": False}, 4, {"name": "constant"}),
    "ngdiff, accum 4": ({"name": "ngdiff", "eps": 1e-8}, 4, {"name": "constant"}),
    "ngdiff + gen (probes)": ({"name": "ngdiff", "eps": 1e-8}, 1, {"name": "gen", "lazy": 1}),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def child(name: str, hidden: int, layers: int, steps: int, optimizer: str, weight_decay: float) -> dict:
    import torch

    from step_time import _Tok, features
    from unlearn.engine import unlearn
    from unlearn.methods import build_method
    from unlearn.models import build_tiny_llama
    from unlearn.schedulers import build_scheduler

    torch.manual_seed(0)
    arch = {"hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": 8, "max_position_embeddings": 64}
    model = build_tiny_llama(arch, _Tok(), seed=0)
    mcfg, accum, scfg = VARIANTS[name]
    batch = 4  # short sequences, few of them: gradient-sized buffers, not activations, set the peak
    forget, retain = features(steps * batch, seed=1, length=12, prompt=4), features(64, seed=2, length=12, prompt=4)
    p_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    base = rss_mb()
    cfg = {"lr": 1e-4, "epochs": 1, "batch_size": batch // accum, "grad_accum_steps": accum, "optimizer": optimizer,
           "weight_decay": weight_decay, **mcfg}
    with tempfile.TemporaryDirectory() as tmp:
        unlearn(model, build_method(cfg), lambda t, e: build_scheduler(scfg, 1e-4, t, e), forget, retain, cfg,
                pad_id=0, seed=0, log_path=Path(tmp) / "steps.jsonl")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"peak_mb": peak - base, "param_mb": p_mb}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.hidden, args.layers, args.steps, args.optimizer, args.weight_decay)))
        return
    out = {}
    for name in VARIANTS:
        # a fixed mmap threshold: glibc's dynamic one would keep freed gradient-sized blocks in the
        # heap, and the peak resident memory would count memory already freed
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, __file__, "--child", name, "--hidden", str(args.hidden), "--layers",
                               str(args.layers), "--steps", str(args.steps), "--optimizer", args.optimizer,
                               "--weight-decay", str(args.weight_decay)],
                              capture_output=True, text=True,
                              check=True, env=env)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    p = next(iter(out.values()))["param_mb"]
    print(f"{args.optimizer}, weight decay {args.weight_decay}; trainable parameters: P = {p:.0f} MB in fp32; peak above the built model:")
    print(f"{'variant':<32}{'MB':>8}{'x P':>7}")
    for name, r in out.items():
        print(f"{name:<32}{r['peak_mb']:>8.0f}{r['peak_mb'] / p:>7.2f}")
    base = out["gdiff (one gradient)"]["peak_mb"]
    print()
    print(f"peak ratio ngdiff / gdiff (one gradient)            = {out['ngdiff']['peak_mb'] / base:.3f}")
    print(f"peak ratio ngdiff / gdiff (one gradient), accum 4   = "
          f"{out['ngdiff, accum 4']['peak_mb'] / out['gdiff (one gradient), accum 4']['peak_mb']:.3f}")
    print(f"peak ngdiff - gdiff (one gradient)                  = {(out['ngdiff']['peak_mb'] - base) / p:.2f} P")


if __name__ == "__main__":
    main()
