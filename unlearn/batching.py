"""What one update sees: the effective batch, drawn as one batch, split across processes and
micro-batches, and the normalization that makes every split take the same update.

An update is defined by its effective batch, ``batch_size x grad_accum_steps x processes``
forget examples, each paired with a random retain example (DESIGN.md §8). It is drawn exactly
as one batch of that size would be (:class:`PairedBatches`); process r of W takes items r, r+W,
... of it, and cuts its part into micro-batches of ``batch_size``. Token-mean losses are divided
by the effective batch's scored-token count and per-sequence means weighted by each
micro-batch's share of its sequences (:func:`normalize_batches`), so that summing the
micro-batches' gradients and averaging across processes (DDP) gives the gradient of the whole
effective batch: ``batch_size=4``, ``batch_size=2 grad_accum_steps=2`` and ``batch_size=2`` on 2
processes take the same update (tests/test_accumulation.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch

from unlearn.data import Feature, collate
from unlearn.losses import TOKEN_NORMALIZER, scored_tokens

log = logging.getLogger(__name__)


STEP_RULES = ("epochs", "tofu", "full_batches")


def check_step_rule(rule: str) -> None:
    if rule not in STEP_RULES:
        raise ValueError(f"unknown method.step_rule {rule!r}; valid: {', '.join(STEP_RULES)}")


def batch_plan(cfg: Mapping[str, Any], processes: int) -> dict[str, int]:
    """micro-batch x accumulation x processes = the effective batch of every update.

    ``method.effective_batch`` set (the recipes: 32) fixes the product: ``grad_accum_steps``
    (null) is then what makes it, on however many processes the run has."""
    micro = int(cfg["batch_size"])
    accum, effective = cfg.get("grad_accum_steps"), cfg.get("effective_batch")
    if micro < 1 or (accum is not None and int(accum) < 1) or (effective is not None and int(effective) < 1):
        raise ValueError(f"method.batch_size, grad_accum_steps and effective_batch must be >= 1, got "
                         f"{micro}, {accum}, {effective}")
    if effective is not None:
        per_update = micro * processes
        if int(effective) % per_update or (accum is not None and int(accum) * per_update != int(effective)):
            raise ValueError(f"method.effective_batch={effective} is not method.batch_size={micro} x "
                             f"grad_accum_steps={accum if accum is not None else '?'} x {processes} process(es)")
        accum = int(effective) // per_update
    accum = int(accum or 1)
    return {"batch_size": micro, "grad_accum_steps": accum, "processes": processes,
            "effective_batch": micro * accum * processes}


@dataclass(frozen=True)
class MicroBatch:
    """One forward/backward's worth of this process's part of a step: forget and retain indices,
    and its weight (0 for the copies that pad a short step under FSDP, see :meth:`PairedBatches.steps`)."""

    forget: list[int]
    retain: list[int]
    weight: float = 1.0


class PairedBatches:
    """Epochs over the forget set, each forget batch paired with random retain examples.

    Global batches are formed exactly as in one process: the forget order is seeded by (seed,
    epoch), and each step draws one retain index per forget example from ONE generator seeded by
    the run seed only. Process r of W then takes items r, r+W, ... of both, so the processes see
    different retain samples and their union is the 1-process batch. A trailing forget batch with
    fewer than W examples (some process would get none) is skipped when W > 1, and every short one
    with ``drop_last``.
    """

    def __init__(
        self,
        forget: Sequence[Feature],
        retain: Sequence[Feature],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world: int = 1,
        drop_last: bool = False,
    ) -> None:
        if not forget:
            raise ValueError("the forget set is empty")
        if not retain:
            raise ValueError("the retain set is empty")
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world} processes")
        self.forget, self.retain = forget, retain
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.drop_last = drop_last  # skip each epoch's short rest batch
        if drop_last and len(forget) < batch_size:
            raise ValueError(f"the forget set ({len(forget)} examples) holds no full batch of {batch_size}")
        # one stream for every process (the stream a 1-process run drew before: rank 0's seed)
        self.retain_gen = torch.Generator().manual_seed(seed * 1_000_003 + 7919)
        self._probe_gen: torch.Generator | None = None  # GeN's fresh probe batches (:meth:`fresh`)
        if len(forget) < world:
            raise ValueError(f"the forget set ({len(forget)} examples) is smaller than the {world} processes")
        rest = len(forget) % batch_size
        if rest and rest < world and not drop_last:
            log.warning("the last forget batch of each epoch (%d examples) is skipped: fewer than the %d processes",
                        rest, world)

    @property
    def steps_per_epoch(self) -> int:
        full, rest = divmod(len(self.forget), self.batch_size)
        return full + (1 if rest >= self.world and not self.drop_last else 0)

    def total_steps(self, rule: str, epochs: int) -> int:
        """How many updates a run takes (``method.step_rule``): ``epochs`` x :attr:`steps_per_epoch`
        (``epochs``: each epoch's rest is a short last batch; ``full_batches``, with ``drop_last``:
        floor(N / E) an epoch, the Trainer's ``len(dataloader) // grad_accum`` as open-unlearning
        runs it), or ``tofu``: floor(epochs x N / E), TOFU ``forget.py``'s ``max_steps`` (the epochs
        still cycle with their rest)."""
        check_step_rule(rule)
        if rule == "full_batches" and not self.drop_last:
            raise ValueError("step_rule full_batches needs PairedBatches(drop_last=True)")
        if rule == "tofu":
            return max(1, epochs * len(self.forget) // self.batch_size)
        return epochs * self.steps_per_epoch

    def _global(self, epoch: int, start: int = 0) -> Iterator[tuple[list[int], list[int]]]:
        """``start``: skip the epoch's first ``start`` steps without drawing their retain indices
        (a resumed run, whose retain stream is restored to where it stopped)."""
        order = torch.randperm(len(self.forget), generator=torch.Generator().manual_seed(self.seed + 104729 * epoch)).tolist()
        taken = 0
        for i in range(0, len(order), self.batch_size):
            forget = order[i : i + self.batch_size]
            if len(forget) < (self.batch_size if self.drop_last else self.world):
                continue
            taken += 1
            if taken <= start:
                continue
            yield forget, torch.randint(len(self.retain), (len(forget),), generator=self.retain_gen).tolist()

    def state(self) -> dict[str, Any]:
        """The random streams' positions (resumable state)."""
        return {"retain": self.retain_gen.get_state(),
                "probe": None if self._probe_gen is None else self._probe_gen.get_state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.retain_gen.set_state(state["retain"])
        if state.get("probe") is not None:
            self._probe_gen = torch.Generator()
            self._probe_gen.set_state(state["probe"])

    def epoch(self, epoch: int) -> Iterator[tuple[list[int], list[int]]]:
        """Yield (forget indices, retain indices) of this process, step by step."""
        for forget, retain in self._global(epoch):
            yield forget[self.rank :: self.world], retain[self.rank :: self.world]

    def steps(self, epoch: int, micro: int, synced: bool = False, start: int = 0) -> Iterator[list[MicroBatch]]:
        """Yield this process's micro-batches (at most ``micro`` examples each), step by step.

        A full step gives every process the same number of micro-batches; a trailing short one
        may not (rank 0 holds the most items). ``synced`` (FSDP: every forward is a collective)
        pads the others with weight-0 copies of their first micro-batch, so every process runs
        rank 0's number of forward passes."""
        for forget, retain in self._global(epoch, start):
            f, r = forget[self.rank :: self.world], retain[self.rank :: self.world]
            out = [MicroBatch(f[i : i + micro], r[i : i + micro]) for i in range(0, len(f), micro)]
            if synced:
                most = -(-len(forget[0 :: self.world]) // micro)
                out += [MicroBatch(out[0].forget, out[0].retain, 0.0)] * (most - len(out))
            yield out

    def fresh(self, micro: int) -> list[MicroBatch]:
        """An effective batch drawn at random (with replacement) from both sets for a GeN probe
        (``scheduler.probe_batch=fresh``, as the official code probes on the next batch). Its own
        seeded stream: the training batches are the same whether or not probes draw."""
        if self._probe_gen is None:
            self._probe_gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 104723)
        n = self.batch_size
        forget = torch.randint(len(self.forget), (n,), generator=self._probe_gen).tolist()[self.rank :: self.world]
        retain = torch.randint(len(self.retain), (n,), generator=self._probe_gen).tolist()[self.rank :: self.world]
        return [MicroBatch(forget[i : i + micro], retain[i : i + micro]) for i in range(0, len(forget), micro)]

    def batch(self, which: str, index: Sequence[int], pad_id: int, device) -> dict[str, torch.Tensor]:
        feats = self.forget if which == "forget" else self.retain
        out = {k: v.to(device) for k, v in collate([feats[j] for j in index], pad_id).items()}
        out["index"] = torch.tensor(index, dtype=torch.long, device=device)
        return out


def materialize(pairs: PairedBatches, plan_step: Sequence[MicroBatch], pad_id: int, acc):
    """(micro-batches on the device, their weights, their sequence shares) of one planned step."""
    micro = [{"forget": pairs.batch("forget", m.forget, pad_id, acc.device),
              "retain": pairs.batch("retain", m.retain, pad_id, acc.device)} for m in plan_step]
    weights = [m.weight for m in plan_step]
    return micro, weights, normalize_batches(micro, weights, acc)


def normalize_batches(micro: Sequence[dict[str, dict[str, torch.Tensor]]], weights: Sequence[float],
                      acc) -> list[dict[str, float]]:
    """Make each micro-batch's losses parts of the effective batch's losses (one all-reduce a step).

    Each batch gets ``token_normalizer`` = (effective batch's scored-token count of its task) / W,
    so :func:`unlearn.losses.lm_loss` on it is its summed NLL over that: the sum over micro-batches
    and mean across processes of the loss (and DDP's average of the gradients) is the effective
    batch's token mean. Returns, per micro-batch and task, its sequence share
    ``n_micro * W / n_effective``: the factor that makes a per-sequence mean of the micro-batch sum
    and average to the effective batch's per-sequence mean. Weight-0 (padding) micro-batches count
    for nothing.
    """
    names = list(micro[0]) if micro else []
    tokens = {t: sum(w * float(scored_tokens(mb[t]["labels"])) for mb, w in zip(micro, weights)) for t in names}
    seqs = {t: sum(w * float(mb[t]["input_ids"].shape[0]) for mb, w in zip(micro, weights)) for t in names}
    world = acc.num_processes
    counts = torch.tensor([tokens[t] for t in names] + [seqs[t] for t in names], dtype=torch.float64,
                          device=acc.device)
    if world > 1:
        counts = acc.reduce(counts, "sum")
    counts = counts.tolist()
    total_tokens = dict(zip(names, counts[: len(names)]))
    total_seqs = dict(zip(names, counts[len(names) :]))
    shares = []
    for mb in micro:
        for t in names:
            mb[t][TOKEN_NORMALIZER] = torch.tensor(max(total_tokens[t], 1.0) / world, dtype=torch.float32,
                                                   device=acc.device)
        shares.append({t: mb[t]["input_ids"].shape[0] * world / total_seqs[t] for t in names})
    return shares


def global_means(values: Mapping[str, torch.Tensor], acc) -> dict[str, float]:
    """Each task's loss averaged across processes (one all-reduce): with the normalization of
    :func:`normalize_batches`, the loss of the effective batch -- the same number on every process."""
    names = list(values)
    if not names:
        return {}
    stacked = torch.stack([values[t].detach().float().reshape(()) for t in names])
    if acc.num_processes > 1:
        stacked = acc.reduce(stacked, "mean")
    return dict(zip(names, (float(v) for v in stacked.tolist())))

