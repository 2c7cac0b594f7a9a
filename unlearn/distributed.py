"""Several processes: data-parallel unlearning and sharded evaluation through ``accelerate``.

How to launch
-------------
The same ``run.py`` serves one process and several; the pipeline creates one ``Accelerator`` per
run and hands it down. On CPU (gloo, DDP) -- measured on a CPU-only machine::

    torchrun --nproc_per_node 2 run.py debug=tiny method=ngdiff
    accelerate launch --multi_gpu --num_processes 2 run.py debug=tiny
    accelerate launch --config_file conf/accelerate/ddp_cpu.yaml run.py debug=tiny

(``accelerate launch --cpu --num_processes 2`` starts ONE process: accelerate's CPU launcher only
spawns several through MPI; ``--multi_gpu`` uses torchrun, and without a GPU our Accelerator runs
in CPU mode, i.e. DDP over gloo.) On GPUs::

    accelerate launch --config_file conf/accelerate/fsdp.yaml run.py model=hf ...   # FSDP
    torchrun --nproc_per_node 8 run.py ...                                           # DDP (nccl)

What several processes mean (DESIGN.md §5), and why a W-process run takes the same update as a
1-process run on the concatenated batch (up to floating-point noise):

* ``method.batch_size`` is per process (and micro-batch): the effective batch of
  ``batch_size x grad_accum_steps x W`` forget examples is drawn as one batch and split
  ``[rank::W]``; its retain partners are drawn ONCE per step from a generator seeded by the run
  seed only and split the same way, so the processes see different retain samples whose union is
  the 1-process batch (:mod:`unlearn.batching`);
* token-mean LM losses are divided by the GLOBAL scored-token count (all-reduced once per step,
  put into each batch as ``token_normalizer`` and honoured by :func:`unlearn.losses.lm_loss`),
  scaled by W so that DDP's gradient *average* is the global token mean; other (per-sequence
  mean) losses get the factor ``n_micro * W / n_global`` (1 when the split is even);
* logged losses and GeN's probe losses are these values averaged across processes, i.e. exact
  global means, so every process logs the same row and GeN picks the same rate everywhere;
  gradient norms and cosines are global (DDP all-reduces gradients; sharded FSDP parameters sum
  their per-shard inner products across processes, :class:`unlearn.gradients.TaskGradients`);
* stage building (world, tokenizer, finetuning) and the cached reference evaluations run on the
  main process first (plain single-process training, no collective inside), the others then read
  the stage cache; the final and trajectory evaluations are sharded across the processes and
  gathered back in input order (:func:`sharded_eval`);
* only the main process writes the record, the step log, ``run.log`` and the checkpoint; every
  run ends with a barrier, and every process exits with a barrier and ``destroy_process_group``.

Failures: one while preparing (bad input, a missing checkpoint) fails every process together and
the record says so; one that hits every process alike does too. A failure on ONE process (out of
memory on one GPU) cannot be waited on by the others, which sit in a collective: after 60 s the
failing process exits (:class:`FailedAlone`: one line, no traceback), the launcher stops the job,
and the main process's record (if it got to write one) names its own error or the lost connection.
Every failed process hands its status line to the launcher (:func:`tell_launcher`), whose failure
report then names it. ``UNLEARN_DIST_TIMEOUT_MIN`` (default 720) is the collective timeout: the
other processes wait that long for the main process to build the stages.

A method whose losses can leave a trainable parameter without gradient (RMU training every
parameter: nothing after layer l) says so (``Method.unused_parameters``), and DDP is then built with
``find_unused_parameters`` (:func:`find_unused_parameters`); a parameter no process gave a gradient
keeps ``.grad`` None, as in one process, so the optimizer skips it there too.

Limits: accelerate enables FSDP only on accelerator devices (on a CPU-only machine
``conf/accelerate/fsdp.yaml`` runs DDP over gloo, with a warning, and the record's
``processes.distributed_type`` says MULTI_CPU). Its unlearning loop is exercised over gloo all the
same: tests/test_parallel_methods.py switches accelerate's state to FSDP2, and every method takes
the 1-process updates there; the sharded evaluation and checkpoint are not exercised on CPU.
Token-mean losses that a method computes on batches it builds itself (IDK's answers), CE-U's
micro-batch token mean and KL over all positions are per-process means, exact only in 1 process
(or when every sequence has the same length).
"""
from __future__ import annotations

import atexit
import contextvars
import dataclasses
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT_ENV = "UNLEARN_DIST_TIMEOUT_MIN"


def make_accelerator(**tracking):
    """The run's Accelerator: CPU mode without a GPU (gloo DDP under torchrun), a long collective
    timeout so the other processes can wait for the main process's stage builds; ``tracking``:
    ``log_with`` / ``project_dir`` (:func:`unlearn.trackers.accelerator_kwargs`)."""
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    minutes = float(os.environ.get(TIMEOUT_ENV, 720))
    # mixed_precision="no": the run's model.precision is applied by unlearn.precision (per run, per
    # task gradient), never by accelerate as well; a launcher's --mixed_precision is checked against it
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no",
                      kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(minutes=minutes))], **tracking)
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and not is_fsdp(acc):
        log.warning("FSDP was asked for, but accelerate runs %s here (FSDP needs GPUs): plain data "
                    "parallelism, every process holds the whole model", acc.distributed_type)
    return acc


def find_unused_parameters(acc, needed: bool) -> None:
    """Before ``acc.prepare(model)``: whether DDP looks for the parameters a backward left without
    gradient (accelerate's ``DistributedDataParallelKwargs``; :attr:`unlearn.methods.Method.unused_parameters`).
    Without the search DDP waits for their gradients and fails at the next step; with it they are
    marked ready, and one that no process used keeps ``.grad`` None, as in one process."""
    from accelerate.utils import DistributedDataParallelKwargs

    acc.ddp_handler = dataclasses.replace(acc.ddp_handler or DistributedDataParallelKwargs(),
                                          find_unused_parameters=needed)


def is_fsdp(acc) -> bool:
    return acc is not None and str(acc.distributed_type).endswith("FSDP")


def sum_across(acc) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``TaskGradients.reduce`` for sharded parameters (FSDP): per-shard inner products summed
    across processes. DDP gradients are already all-reduced (the local sum is global): None."""
    if not is_fsdp(acc) or acc.num_processes == 1:
        return None

    def reduce(x: torch.Tensor) -> torch.Tensor:
        y = x.detach().clone().to(acc.device)
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y.to(x.device)

    return reduce


def broadcast_object(acc, obj: T) -> T:
    """The main process's ``obj`` on every process."""
    if acc.num_processes == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, count: int) -> list[Any]:
    """Every process's ``obj``, in rank order (all processes must call it)."""
    if count == 1:
        return [obj]
    out: list[Any] = [None] * count
    dist.all_gather_object(out, obj)
    return out


def agree(acc, error: BaseException | None) -> None:
    """Make a failure on any process a failure on all of them (all processes must call it)."""
    if acc.num_processes == 1:
        if error is not None:
            raise error
        return
    msgs = gather_objects(None if error is None else f"{type(error).__name__}: {error}", acc.num_processes)
    if error is not None:
        raise error
    bad = [(rank, m) for rank, m in enumerate(msgs) if m is not None]
    if bad:
        raise RuntimeError("; ".join(f"process {rank} failed: {m}" for rank, m in bad))


def main_process_first(acc, fn: Callable[[], T]) -> T:
    """``fn()`` on the main process, then on the others (which reuse what it cached).

    Unlike a bare barrier, a failure of the main process reaches the others (they raise instead of
    building the same stages themselves), and a failure on any process fails every process.
    """
    if acc.num_processes == 1:
        return fn()
    out, error = None, None
    if acc.is_main_process:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001 - re-raised by agree() on every process
            error = e
    agree(acc, error)
    if not acc.is_main_process:
        try:
            out = fn()
        except Exception as e:  # noqa: BLE001
            error = e
    agree(acc, error)
    return out  # type: ignore[return-value]


class FailedAlone(RuntimeError):
    """This process failed while the others did not (they wait in a collective): it must end, and
    the launcher then stops the job. The main process wrote the failed record if it got to;
    ``run.py`` prints the message as one line and exits 1."""


_FAILURES = {"count": 0}


def failed_together(acc, seconds: float = 60.0) -> bool:
    """After a failure: did every process fail (and reach this point)?

    Each failing process marks its failure in the process group's key-value store (no collective:
    the others may be waiting inside one) and waits up to ``seconds`` for every process's mark.
    True when all arrive (a failure of the stage building, which :func:`main_process_first`
    shares, or one that every process hit); False when some process is still elsewhere.
    """
    if acc.num_processes == 1:
        return True
    if not dist.is_initialized():
        return False
    _FAILURES["count"] += 1  # runs (and their failures) come in the same order on every process
    key = f"unlearn/failed/{_FAILURES['count']}"
    try:
        store = dist.distributed_c10d._get_default_store()
        store.set(f"{key}/{acc.process_index}", "1")
        store.wait([f"{key}/{r}" for r in range(acc.num_processes)], timedelta(seconds=seconds))
    except Exception as e:  # noqa: BLE001 - a timeout (or no store): not every process failed
        log.error("not every process failed within %.0f s (%s): this process ends the job", seconds, e)
        return False
    return True


_TEARDOWN = {"registered": False, "clean": True}


def finish(acc) -> None:
    """End of a run: every process waits for the others (the record is on disk). The process group
    itself lives on for the next run of this process (a multirun: re-initializing a torchrun group
    in the same process races on the rendezvous keys) and is torn down at exit -- barrier, then
    ``destroy_process_group`` -- without which some 2-process runs crash at exit."""
    if acc is None or acc.num_processes == 1 or not dist.is_initialized():
        return
    dist.barrier()
    if not _TEARDOWN["registered"]:
        atexit.register(_teardown)
        _TEARDOWN["registered"] = True


def abandon() -> None:
    """This process failed alone (the others may wait in a collective): exit without the
    teardown's barrier, so that the launcher stops the job."""
    _TEARDOWN["clean"] = False


def tell_launcher(message: str) -> None:
    """A failed worker's one line, as the root cause the launcher reports.

    ``torchrun`` and ``accelerate launch`` give each worker an error file
    (``TORCHELASTIC_ERROR_FILE``) and print its content in their failure report, or else a pointer
    to their documentation. This writes the structure torch's ``ErrorHandler.record_exception``
    writes, with the line where it puts the traceback (which stays in ``run.log``). Nothing outside
    a launcher."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    data = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}}
    try:
        Path(path).write_text(json.dumps(data))
    except OSError as e:  # the report then points at torch's docs instead: not worth failing over
        log.warning("could not write the launcher's error file %s: %s", path, e)


def _teardown() -> None:
    if not dist.is_initialized() or not _TEARDOWN["clean"]:
        return
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- sharded evaluation


@dataclass(frozen=True)
class Shard:
    """This process's part of an evaluation: batches ``index::count`` of the (length-sorted) work.

    ``synced``: every process must run the same number of forward passes (FSDP: each forward
    gathers parameters collectively), so shards are padded to equal length and generation runs
    with ``synced_gpus``.
    """

    index: int
    count: int
    synced: bool = False

    @classmethod
    def of(cls, acc) -> "Shard":
        return cls(int(acc.process_index), int(acc.num_processes), is_fsdp(acc))

    def take(self, batches: Sequence[T]) -> tuple[list[T], int]:
        """(this process's batches ``index::count``, how many of them are real).

        Whole batches, formed as a 1-process run forms them, so an item is padded and processed
        exactly as there. When ``synced`` the list is padded (with copies of the first batch, whose
        results the caller drops) so every process runs the same number of forward passes."""
        mine = list(batches[self.index :: self.count])
        real = len(mine)
        if self.synced and batches:
            mine += [batches[0]] * (-(-len(batches) // self.count) - real)
        return mine, real

    def gather(self, obj: Any) -> list[Any]:
        return gather_objects(obj, self.count)


_SHARD: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("unlearn_eval_shard", default=None)


def current_shard(shard: Any = None) -> Shard | None:
    """The shard an evaluation function should use: ``shard`` (a :class:`Shard` or an
    Accelerator) if given, else the one set by :func:`sharded_eval`, else None (everything here)."""
    if shard is None:
        shard = _SHARD.get()
    if shard is not None and not isinstance(shard, Shard):
        shard = Shard.of(shard)
    return shard if shard is not None and shard.count > 1 else None


@contextmanager
def sharded_eval(acc) -> Iterator[None]:
    """Inside: :func:`eval.likelihood.score` and :func:`eval.generation.greedy_generate` split
    their items across the processes and gather the results (every process must enter)."""
    token = _SHARD.set(Shard.of(acc) if acc is not None and acc.num_processes > 1 else None)
    try:
        yield
    finally:
        _SHARD.reset(token)


def eval_model(acc, model: torch.nn.Module) -> torch.nn.Module:
    """The module evaluation calls: the bare model under DDP (no wrapper collectives, ``generate``
    available); the prepared model itself under FSDP (its forward gathers the shards)."""
    if acc is None or is_fsdp(acc):
        return model
    return acc.unwrap_model(model)


def all_finite(acc, model: torch.nn.Module) -> bool:
    """Every parameter finite, on every process (FSDP: each holds a shard)."""
    ok = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in model.parameters())
    if acc is None or acc.num_processes == 1:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=acc.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0)


def save_model(acc, model: torch.nn.Module, tokenizer, path: str | Path, dtype: torch.dtype | None = None) -> None:
    """``save_pretrained`` on the main process. Under FSDP every process takes part in gathering the
    full state dict (``accelerator.get_state_dict``), the main process writes it, its floating-point
    tensors in ``dtype`` (the storage dtype; the sharded fp32 masters stay as they are)."""
    path = str(path)
    if is_fsdp(acc):
        state = acc.get_state_dict(model)
        if acc.is_main_process:
            if dtype is not None:
                state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
            acc.unwrap_model(model).save_pretrained(path, state_dict=state, save_function=acc.save)
            tokenizer.save_pretrained(path)
        return
    if acc is None or acc.is_main_process:
        bare = model if acc is None else acc.unwrap_model(model)
        bare.save_pretrained(path)
        tokenizer.save_pretrained(path)


def quiet_other_processes(acc, run_dir: Path) -> Callable[[], None]:
    """Non-main processes: no handler writing into the run directory (Hydra's ``run.log``) and only
    warnings on the console. Returns the function that restores the logging setup."""
    if acc.is_main_process:
        return lambda: None
    root = logging.getLogger()
    run_dir = Path(run_dir).resolve()
    removed = [h for h in root.handlers
               if isinstance(h, logging.FileHandler) and Path(h.baseFilename).resolve().parent == run_dir]
    for h in removed:
        root.removeHandler(h)
    level = root.level
    root.setLevel(logging.WARNING)

    def restore() -> None:
        root.setLevel(level)
        for h in removed:
            root.addHandler(h)

    return restore
