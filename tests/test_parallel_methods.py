"""Every method takes the same updates in 1 process, in 2 processes of DDP and in 2 processes of
FSDP2 (``fully_shard``), all over gloo on CPU in fp32: after 3 steps every parameter agrees to 1e-5,
every step logs the same losses and direction norm, and the parameters that did not move in 1
process (RMU's layers after l: no gradient, so weight decay skips them) stay bit for bit where they
were under both.

This file is also the worker script: ``torchrun --nproc_per_node 2 tests/test_parallel_methods.py
OUT CASE...`` runs the cases under DDP, then switches the accelerator to FSDP2 and runs them again,
and saves the main process's gathered parameters as ``OUT/<case>.<ddp|fsdp>.pt``. One spawn per
tier: starting the processes is the slow part.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as the torchrun worker
    sys.path.insert(0, str(ROOT))

from tests.test_distributed import torchrun  # noqa: E402
from tests.tiny import fixed_features, tiny_llama, varied_features  # noqa: E402

# ``batch_size`` is the effective batch: one process takes it whole, each of 2 processes half of it
# in micro-batches of 1 (ACCUM), so that gradients are synchronized on the last one only and the
# short last step (3 examples: 2 + 1) pads FSDP's second process with a weight-0 micro-batch.
# SGD, whose update is linear in the gradient, so that a parameter's difference is the gradient's
# (fp32 rounding: ~1e-7 here). Adam divides each entry by its own size, which turns the rounding
# noise of near-zero entries into steps of up to lr (measured: 9e-5 between two splits of one batch
# in one process, NGDiff + UNDIAL at lr 1e-2). The direction is clipped to norm 1 (so that every
# method moves by about as much) and its norm before clipping is compared; the momentum buffers are
# optimizer state (sharded under FSDP), the weight decay moves a parameter given a zero gradient.
BASE = {"lr": 1.0, "epochs": 1, "max_steps": 3, "batch_size": 4, "optimizer": "sgd", "momentum": 0.9,
        "weight_decay": 0.01, "max_grad_norm": 1.0}
# case -> (method, its settings, features). "varied": sequences of different lengths, which the
# effective batch's token normalizer makes exact; "fixed": one length, for the losses that are a
# mean over one micro-batch by definition (open-unlearning's: CE-U's token mean, KL over every
# padded position, IDK's own answer batches), which a split keeps exact only when every process
# holds the same number of tokens.
CASES = {
    "ga": ("ga", {}, "varied"),
    "gdiff": ("gdiff", {}, "varied"),
    "gdiff_kl": ("gdiff_kl", {}, "fixed"),
    "kl": ("kl", {}, "fixed"),
    "kl_scored": ("kl", {"kl_positions": "scored"}, "varied"),
    "npo": ("npo", {}, "varied"),
    "simnpo": ("simnpo", {}, "varied"),
    "idk": ("idk", {}, "fixed"),
    "idk_dpo": ("idk_dpo", {}, "varied"),
    "ngdiff": ("ngdiff", {}, "varied"),
    "mgda": ("mgda", {}, "varied"),
    "pcgrad": ("pcgrad", {}, "varied"),
    "cagrad": ("cagrad", {}, "varied"),
    "imtlg": ("imtlg", {}, "varied"),
    "rmu": ("rmu", {}, "varied"),
    "rmu_all": ("rmu", {"update_params": "all"}, "varied"),
    "rmu_all_nll": ("rmu", {"update_params": "all", "retain_loss": "nll"}, "varied"),
    "rmu_all_one_backward": ("rmu", {"update_params": "all", "task_grad_stats": False}, "varied"),
    "undial": ("undial", {}, "varied"),
    "wga": ("wga", {}, "varied"),
    "satimp": ("satimp", {}, "varied"),
    "ceu": ("ceu", {}, "fixed"),
    "pdu": ("pdu", {"dual_lr": 0.1}, "varied"),
    "ngdiff_rmu_all": ("ngdiff", {"forget_loss": "rmu", "forget_args": {"update_params": "all"}}, "varied"),
    "ngdiff_undial": ("ngdiff", {"forget_loss": "undial"}, "varied"),
    "ngdiff_npo": ("ngdiff", {"forget_loss": "npo"}, "varied"),
    "ngdiff_wga": ("ngdiff", {"forget_loss": "wga"}, "varied"),
}
# the default tier: RMU training every parameter (DDP's unused parameters), PDU (a dual variable
# fed by the global retain loss) and a direction method whose forget task reaches only some parameters
FAST = ("rmu_all", "pdu", "ngdiff_rmu_all")
SLOW = tuple(c for c in CASES if c not in FAST)
FEATURES = {"varied": varied_features, "fixed": fixed_features}
N_FORGET, N_RETAIN = 11, 24  # steps of 4, 4 and 3 forget examples
ACCUM = 2
TOL = 1e-5
MODES = ("ddp", "fsdp")


def encode(row, answer=None, prefix_tokens=32):
    """The row (a feature) itself; with ``answer``: its first 3 tokens, then 8 tokens of the
    answer's characters (every IDK answer feature has the same length)."""
    if answer is None:
        return row
    ids = row["input_ids"][:3] + [3 + ord(c) % 47 for c in answer[:8]]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * 3 + ids[3:]}


def run_case(name: str, acc, out: Path, tag: str) -> dict[str, torch.Tensor] | None:
    """One 3-step run on this process (step log ``OUT/<name>.<tag>.jsonl``); the main process
    returns the gathered parameters."""
    from unlearn.engine import unlearn
    from unlearn.methods import MethodContext, build_method
    from unlearn.methods.base import method_defaults
    from unlearn.schedulers import build_scheduler

    method, extra, kind = CASES[name]
    forget, retain = FEATURES[kind](N_FORGET, 1), FEATURES[kind](N_RETAIN, 2)
    cfg = {**method_defaults(method), "name": method, **BASE, **extra}
    if acc.num_processes > 1:
        cfg.update(batch_size=cfg["batch_size"] // (acc.num_processes * ACCUM), grad_accum_steps=ACCUM)
    ctx = MethodContext(encode=encode, forget_rows=forget, retain_rows=retain, forget_features=forget,
                        retain_features=retain, pad_id=0, device=torch.device("cpu"), load_reference=tiny_llama)
    res = unlearn(tiny_llama(), build_method(cfg), lambda t, e: build_scheduler({"name": "constant"}, cfg["lr"], t, e),
                  forget, retain, cfg, pad_id=0, seed=7, log_path=out / f"{name}.{tag}.jsonl", accelerator=acc, context=ctx)
    assert res.status == "ok" and res.steps == 3, res.reason
    state = acc.get_state_dict(res.model)  # FSDP: gathered from the shards onto the main process
    return {k: v.detach().clone() for k, v in state.items()} if acc.is_main_process else None


def fsdp_over_gloo(acc) -> None:
    """Switch a CPU accelerator to accelerate's FSDP2, which accelerate itself enables only on GPUs:
    its own ``prepare`` (``fully_shard``, which runs on CPU), ``no_sync`` and ``get_state_dict`` then
    run over gloo, with the settings of conf/accelerate/fsdp.yaml."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True)
    acc.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP  # what accelerate's reduce reads


def worker(out: Path, cases: list[str]) -> None:
    from unlearn.distributed import finish, is_fsdp, make_accelerator

    acc = make_accelerator()
    seconds = {}
    for mode in MODES:
        if mode == "fsdp":
            fsdp_over_gloo(acc)
            assert is_fsdp(acc) and acc.is_fsdp2
        t = time.perf_counter()
        for name in cases:
            params = run_case(name, acc, out, mode)
            if params is not None:
                torch.save(params, out / f"{name}.{mode}.pt")
        seconds[mode] = time.perf_counter() - t
    if acc.is_main_process:
        (out / "seconds.json").write_text(json.dumps(seconds))
    finish(acc)


def spawn(tmp_path_factory, cases) -> Path:
    out = tmp_path_factory.mktemp("parallel_methods")
    t = time.perf_counter()
    proc = torchrun(str(Path(__file__).resolve()), str(out), *cases, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    inner = json.loads((out / "seconds.json").read_text())
    print(f"\n2 processes, {len(cases)} cases: {time.perf_counter() - t:.1f} s in all "
          f"(DDP {inner['ddp']:.1f} s, FSDP {inner['fsdp']:.1f} s)")
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    from unlearn.distributed import make_accelerator

    out, cache = tmp_path_factory.mktemp("one_process"), {}

    def get(name):
        if name not in cache:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # as the workers run: on matrices this small a second thread only
            try:                      # waits (measured 30x slower on a busy 2-core machine)
                cache[name] = run_case(name, make_accelerator(), out, "one")
            finally:
                torch.set_num_threads(threads)
        return cache[name], out

    return get


@pytest.fixture(scope="module")
def two_process_fast(tmp_path_factory):
    return spawn(tmp_path_factory, FAST)


@pytest.fixture(scope="module")
def two_process_slow(tmp_path_factory):
    return spawn(tmp_path_factory, SLOW)


def check(case: str, one_process, two: Path) -> None:
    one, one_dir = one_process(case)
    start = tiny_llama().state_dict()
    moved = {k for k in one if not torch.equal(one[k], start[k])}
    assert max(float((one[k] - start[k]).abs().max()) for k in one) > 100 * TOL  # the run did move
    diffs = []
    for mode in MODES:
        p = torch.load(two / f"{case}.{mode}.pt")
        assert set(p) == set(one)
        diffs.append(max(float((p[k] - one[k]).abs().max()) for k in one))
        # a parameter that got no gradient keeps .grad None everywhere: not even weight decay moves it
        assert {k for k in p if not torch.equal(p[k], start[k])} == moved, mode
        rows, rows1 = (read_rows(d / f"{case}.{tag}.jsonl") for d, tag in ((two, mode), (one_dir, "one")))
        assert len(rows) == len(rows1) == 3
        for r, r1 in zip(rows, rows1):
            for k, v in r1.items():
                if k.startswith("loss/") or k == "dir_norm":
                    assert r[k] == pytest.approx(v, rel=1e-5, abs=1e-7), (mode, k)
    print(f"{case}: max |param - param(1 process)|: DDP {diffs[0]:.2e}, FSDP {diffs[1]:.2e}")
    assert max(diffs) < TOL


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow  # two processes (spawned), DDP and FSDP2: the slow tier (CI runs it)
@pytest.mark.parametrize("case", FAST)
def test_two_processes_ddp_and_fsdp_take_the_one_process_updates(case, one_process, two_process_fast):
    check(case, one_process, two_process_fast)
    if CASES[case][1].get("update_params") == "all":  # l = 0 of 2 layers: no loss reaches layer 1 or the norm
        one, _ = one_process(case)
        assert all(torch.equal(one[k], v) for k, v in tiny_llama().state_dict().items()
                   if k.startswith(("model.layers.1.", "model.norm.")))


@pytest.mark.slow  # every method: one more 2-process spawn
@pytest.mark.parametrize("case", SLOW)
def test_every_method_takes_the_one_process_updates_under_ddp_and_fsdp(case, one_process, two_process_slow):
    check(case, one_process, two_process_slow)


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2:])
