"""The real-scale path on one accelerator, in a few minutes and without a download:

    python bench/gpu_check.py                 # on a GPU: a randomly initialized ~1B Llama
    python bench/gpu_check.py --size small    # anywhere (CPU): the same path on a small Llama

1. NGDiff and GDiff (its one summed gradient, TOFU's ``grad_diff``) on the same batches in
   ``bf16-mixed`` with gradient accumulation (micro-batches of ``--micro`` x ``--accum`` per update,
   ``--seq`` tokens each, AdamW): tokens/s, peak GPU memory (``torch.cuda.max_memory_allocated``)
   and the NGDiff / GDiff step-time ratio (issue 11's target: <= 1.10).
2. GeN's probes (``probe_bench``): a probe at every step, in fp32 (the default) and in
   the run's precision, under bf16-mixed and bf16-true: step time, peak memory, the first vertex
   and how many fits were rejected below the noise floor.
3. A short FSDP job through the real entry point, ``accelerate launch --config_file
   conf/accelerate/fsdp.yaml --num_processes 1 run.py debug=tiny model.precision=bf16-mixed ...``:
   its record's status, precision, effective batch and distributed type (on a CPU-only machine
   accelerate runs it without FSDP, which the record's type shows).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unlearn.engine import unlearn  # noqa: E402
from unlearn.methods import build_method  # noqa: E402
from unlearn.precision import Precision  # noqa: E402
from unlearn.schedulers import build_scheduler  # noqa: E402

SIZES = {  # Llama-3.2-1B's shape with Llama-2's vocabulary (~1.0B parameters); a small one for CPUs
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=32000),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=4096),
}


def build(size: str, seq: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**SIZES[size], max_position_embeddings=seq, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).to(torch.bfloat16)  # stored in bf16, as the TOFU / MUSE checkpoints


def features(n: int, seq: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = [1] + torch.randint(3, vocab, (seq - 1,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * seq, "labels": [-100] * 16 + ids[16:]})
    return out


def peak_memory_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def timed_run(args, mcfg: dict, sched: dict, precision: str, log: Path) -> tuple[float, float, int, list]:
    """One unlearning run of the benchmark model: (median step time past step 0, peak GPU memory in
    GB, parameters, the step rows)."""
    vocab = SIZES[args.size]["vocab_size"]
    effective = args.micro * args.accum
    forget = features(effective * args.steps, args.seq, vocab, 1)
    retain = features(4 * effective, args.seq, vocab, 2)
    model = build(args.size, args.seq)
    n_params = sum(p.numel() for p in model.parameters())
    prec = Precision(precision)
    prec.prepare_trainable(model)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    cfg = {"lr": 1e-5, "epochs": 1, "batch_size": args.micro, "grad_accum_steps": args.accum,
           "optimizer": "adamw", "weight_decay": 0.01, "max_grad_norm": 1.0, **mcfg}
    unlearn(model, build_method(cfg), lambda t, e: build_scheduler(sched, 1e-5, t, e), forget, retain, cfg,
            pad_id=0, seed=0, log_path=log, precision=prec)
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    peak = peak_memory_gb()
    del model
    return statistics.median(r["time"] for r in rows[1:]), peak, n_params, rows  # step 0 warms up


def step_bench(args) -> None:
    effective = args.micro * args.accum
    methods = {"gdiff": {"name": "gdiff", "retain_weight": 1.0, "forget_weight": 1.0, "task_grad_stats": False},
               "ngdiff": {"name": "ngdiff", "eps": 1e-8}}
    times: dict[str, list[float]] = {k: [] for k in methods}
    peaks: dict[str, float] = {}
    n_params = 0
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name, mcfg in methods.items():
                t, peak, n_params, _ = timed_run(args, mcfg, {"name": "constant"}, "bf16-mixed", Path(tmp) / f"{name}.jsonl")
                times[name].append(t)
                peaks[name] = max(peaks.get(name, 0.0), peak)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{device}: Llama {args.size} ({n_params / 1e9:.2f}B parameters), bf16-mixed, micro-batch {args.micro} x "
          f"accumulation {args.accum} = {effective} forget + {effective} retain sequences of {args.seq} tokens per update")
    gpu = torch.cuda.is_available()
    for name in methods:
        t = statistics.median(times[name])
        tokens = 2 * effective * args.seq  # forget and retain sequences
        memory = f"peak GPU memory {peaks[name]:6.1f} GB" if gpu else ""
        print(f"  {name:<7} {t:8.3f} s/step  {tokens / t:10.0f} tokens/s  {memory}")
    ratio = statistics.median(times["ngdiff"]) / statistics.median(times["gdiff"])
    print(f"  step-time ratio ngdiff / gdiff = {ratio:.3f} (target <= 1.10)"
          + (f"; peak memory ratio = {peaks['ngdiff'] / peaks['gdiff']:.3f}" if gpu else
             " (CPU: peak memory per method is bench/memory.py's, in fresh processes)"))


def probe_bench(args) -> None:
    """What GeN's fp32 probes cost (unlearn/probes.py): NGDiff with a probe at every step, probes in
    fp32 against probes in the run's precision, in bf16-mixed and bf16-true (its fp32 shadow)."""
    ngdiff = {"name": "ngdiff", "eps": 1e-8}
    print("GeN probes at every step (NGDiff, lr 1e-5): fp32 probes vs probes in the run's precision")
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("bf16-mixed", "bf16-true"):
            got = {}
            for mode in ("run", "fp32"):
                sched = {"name": "gen", "lazy": 1, "calibrate": 0, "trial_probe": False, "probe_precision": mode}
                got[mode] = timed_run(args, ngdiff, sched, precision, Path(tmp) / f"{precision}-{mode}.jsonl")
            for mode, (t, peak, _, rows) in got.items():
                fits = [r for r in rows if "gen/vertex" in r]
                print(f"  {precision:<10} probes {mode:<4} {t:8.3f} s/step  peak {peak:6.1f} GB  first vertex "
                      f"{fits[0]['gen/vertex'] if fits else float('nan'):.3g} ({fits[0]['gen/reason'] if fits else '-'}), "
                      f"noise-rejected {rows[-1].get('gen_noise')} of {rows[-1].get('gen_probes')}")
            print(f"  {precision:<10} fp32 / run: step time {got['fp32'][0] / got['run'][0]:.3f}, "
                  f"peak memory {got['fp32'][1] / max(got['run'][1], 1e-9):.3f}")


def fsdp_job(args) -> None:
    with tempfile.TemporaryDirectory() as out:
        cmd = ["accelerate", "launch", "--config_file", str(ROOT / "conf/accelerate/fsdp.yaml"), "--num_processes", "1",
               "run.py", "debug=tiny", "model.precision=bf16-mixed", "method.batch_size=2", "method.grad_accum_steps=2",
               "method.max_grad_norm=1.0", "method.max_steps=4", "save_checkpoint=false"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "UNLEARN_OUTPUTS": out}, capture_output=True,
                              text=True, timeout=args.fsdp_timeout)
        records = list(Path(out).rglob("record.json"))
        print(f"FSDP job ({time.perf_counter() - t:.0f} s, exit {proc.returncode}): {' '.join(cmd)}")
        if not records:
            print(proc.stdout[-2000:] + proc.stderr[-3000:])
            return
        rec = json.loads(records[0].read_text())
        u = rec.get("unlearn", {})
        print(f"  status {rec['status']}, distributed type {rec['processes']['distributed_type']}, "
              f"precision {u.get('precision')}, effective batch {u.get('effective_batch')}, steps {u.get('steps')}")
        if rec["status"] != "ok":
            print("  error:", rec.get("error", {}).get("message"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=list(SIZES), default="1b" if torch.cuda.is_available() else "small")
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--accum", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--fsdp-timeout", type=int, default=300)
    ap.add_argument("--skip-fsdp", action="store_true")
    ap.add_argument("--skip-probes", action="store_true")
    args = ap.parse_args()
    step_bench(args)
    if not args.skip_probes:
        probe_bench(args)
    if not args.skip_fsdp:
        fsdp_job(args)


if __name__ == "__main__":
    main()
