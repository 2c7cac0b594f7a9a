"""The precision rehearsal: every method x {32-true, bf16-mixed, bf16-true} x {the default GeN, the
world's fixed rate} on the debug world, each compared with its own 32-true run.

    python bench/rehearsal.py                      # every method, 6 steps, on this machine's device
    python bench/rehearsal.py --methods ngdiff rmu --steps 4 --json out.json

One run per cell through the engine (the same ``unlearn()`` the pipeline calls, the methods' context
from the benchmark), from the debug world's target stored in bf16 for the bf16 precisions (as
``model.dtype=bfloat16``). After ``--steps`` updates it measures, in fp32 on the whole forget and
retain sets, the LM losses of the unlearned model, and prints per method and precision:

* ``dw``: ``||dw_p - dw_32|| / ||dw_32||``, the update's distance from 32-true's (dw: the weights'
  change from the target; bf16-true's is where updates below half a bf16 step round away);
* ``dLf``, ``dLr``: ``|L_p - L_32| / max(|L_32 - L_target|, 0.01 L_target)`` on the forget / retain
  set: how far the precision moves the outcome, as a share of what unlearning moved it;
* ``lr``: GeN only, ``max_t |log(lr_p(t) / lr_32(t))|`` over the steps (0: the same rates), and
  ``lr_decisive`` over the steps up to the first one where a 32-true fit was rejected or its vertex
  fell below a quarter of the rate (:func:`decisive`): there the next rate hangs on the sign of a
  near-zero slope, which any rounding -- or another seed -- flips;
* ``seed`` rows: 32-true with seed 1 against seed 0, the yardstick: a precision that moves the
  outcome less than a seed does changes no conclusion drawn over seeds;
* ``noise``: GeN's probes rejected below the noise floor.

The slow test ``tests/test_rehearsal.py`` runs it and holds the tolerances docs/real_scale.md states.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unlearn.benchmarks import get_benchmark  # noqa: E402
from unlearn.config import compose_config  # noqa: E402
from unlearn.data import collate  # noqa: E402
from unlearn.engine import unlearn  # noqa: E402
from unlearn.losses import lm_loss  # noqa: E402
from unlearn.methods import build_method  # noqa: E402
from unlearn.precision import Precision  # noqa: E402
from unlearn.schedulers import build_scheduler  # noqa: E402
from unlearn.stages import StageCache  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")
SCHEDULERS = ("gen", "constant")


def world(root: Path, overrides=()):
    cfg = compose_config(["debug=tiny", f"paths.root={root}", *overrides])
    bench = get_benchmark(str(cfg.dataset.benchmark))
    return cfg, bench, bench.prepare(cfg, StageCache(cfg.paths.cache))


@torch.no_grad()
def set_loss(model, features, pad: int, device) -> float:
    """The fp32 token-mean LM loss of ``model`` over ``features`` (one batch: the debug sets are small)."""
    batch = {k: v.to(device) for k, v in collate(features, pad).items()}
    probe = {n: p.dtype for n, p in model.named_parameters()}
    model.float()
    try:
        return float(lm_loss(model, batch))
    finally:
        for n, p in model.named_parameters():
            p.data = p.data.to(probe[n])


def decisive(row: dict[str, Any]) -> bool:
    """Every GeN fit of this step was accepted with a vertex of at least a quarter of the rate: the
    rate after it is set by the loss's curvature, not by the sign of a near-zero slope (which the
    rounding of any precision, or another seed, may flip)."""
    fits = [(row.get(f"{k}/accepted"), row.get(f"{k}/vertex")) for k in ("trial", "gen") if f"{k}/a" in row]
    return all(ok and v is not None and v >= 0.25 * row["lr"] for ok, v in fits)


def one_run(method: str, scheduler: str, precision: str, steps: int, root: Path, device, seed: int = 0) -> dict[str, Any]:
    cfg, bench, prepared = world(root, [f"method={method}", f"scheduler={scheduler}"])
    mcfg = {**cfg.method, "epochs": steps, "max_steps": steps}
    model = prepared.load("target")
    if precision != "32-true":
        model.to(torch.bfloat16)
    start = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    Precision(precision).prepare_trainable(model)
    context, forget, retain = bench.method_context(prepared)
    pad = prepared.tokenizer.pad_token_id
    log = root / f"{method}-{scheduler}-{precision}-{seed}.jsonl"
    sched = dict(cfg.scheduler)
    res = unlearn(model, build_method(mcfg), lambda t, e: build_scheduler(sched, float(mcfg["lr"]), t, e),
                  forget, retain, mcfg, pad_id=pad, seed=seed, log_path=log, context=context,
                  fit=str(sched.get("fit", "retain")), precision=Precision(precision))
    model = res.model
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    delta = {n: p.detach().float().cpu() - start[n].cpu() for n, p in model.named_parameters()}
    prefix = next((i for i, r in enumerate(rows) if not decisive(r)), len(rows))  # steps 0..prefix: rates set decisively
    return {"status": res.status, "lr": [r["lr"] for r in rows], "delta": delta, "decisive": prefix,
            "forget": set_loss(model, forget, pad, device), "retain": set_loss(model, retain, pad, device),
            "noise": res.scheduler.get("gen_noise", 0)}


def compare(run: dict, ref: dict, target: dict, gen: bool) -> dict[str, float]:
    num = math.sqrt(sum(float((run["delta"][n] - ref["delta"][n]).pow(2).sum()) for n in ref["delta"]))
    den = math.sqrt(sum(float(ref["delta"][n].pow(2).sum()) for n in ref["delta"]))
    def moved(k):  # what unlearning moved the loss by, at least 1 % of the target's (RMU barely moves LM losses)
        return max(abs(ref[k] - target[k]), 0.01 * target[k])

    out = {"dw": num / den if den else math.inf,
           "dLf": abs(run["forget"] - ref["forget"]) / moved("forget"),
           "dLr": abs(run["retain"] - ref["retain"]) / moved("retain"),
           "noise": run["noise"], "status": run["status"]}
    if gen:
        ratios = [abs(math.log(a / b)) for a, b in zip(run["lr"], ref["lr"])]
        out["lr"] = max(ratios)
        out["lr_decisive"] = max(ratios[: ref["decisive"] + 1])
    return out


def all_methods() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "method").glob("*.yaml"))


def rehearse(methods, steps: int, root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{method: {scheduler/precision: comparison with the 32-true run}} (32-true rows: its own
    numbers); ``methods``: None for every method."""
    methods = methods or all_methods()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _, bench, prepared = world(root)
    target_model = prepared.load("target").to(device)
    _, forget, retain = bench.method_context(prepared)
    pad = prepared.tokenizer.pad_token_id
    target = {"forget": set_loss(target_model, forget, pad, device), "retain": set_loss(target_model, retain, pad, device)}
    del target_model
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for m in methods:
        table[m] = {}
        for s in SCHEDULERS:
            ref = one_run(m, s, "32-true", steps, root, device)
            table[m][f"{s}/32-true"] = {"forget": ref["forget"], "retain": ref["retain"], "lr_last": ref["lr"][-1],
                                        "noise": ref["noise"], "status": ref["status"]}
            for p in PRECISIONS[1:]:
                table[m][f"{s}/{p}"] = compare(one_run(m, s, p, steps, root, device), ref, target, s == "gen")
            table[m][f"{s}/seed"] = compare(one_run(m, s, "32-true", steps, root, device, seed=1), ref, target, s == "gen")
        print(m, json.dumps(table[m], default=lambda x: round(x, 4) if isinstance(x, float) else x), flush=True)
    return table


def markdown(table: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The table of docs/real_scale.md: per method, ``dw / dLf / dLr`` of each precision against 32-true (and of
    seed 1 against seed 0), GeN's rate ratio over the decisive steps."""
    def cell(c: dict[str, Any]) -> str:
        out = f"{c['dw']:.2f} / {c['dLf']:.2f} / {c['dLr']:.2f}"
        return out + (f" / {math.exp(c['lr_decisive']):.2f}x" if "lr_decisive" in c else "")

    cols = ["gen/bf16-mixed", "gen/bf16-true", "gen/seed", "constant/bf16-mixed", "constant/bf16-true", "constant/seed"]
    lines = ["| method | GeN's final rate (32-true) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for m, row in table.items():
        lines.append(f"| {m} | {row['gen/32-true']['lr_last']:.2g} | " + " | ".join(cell(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", nargs="*", default=None, help="default: every method")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--json", type=Path, default=None, help="write the table there")
    ap.add_argument("--markdown", type=Path, default=None, help="print the docs/real_scale.md table of a --json file, run nothing")
    args = ap.parse_args()
    if args.markdown is not None:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        table = rehearse(args.methods, args.steps, Path(tmp))
    if args.json is not None:
        args.json.write_text(json.dumps(table, indent=1))
    print(markdown(table))


if __name__ == "__main__":
    main()
