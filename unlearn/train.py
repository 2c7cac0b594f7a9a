"""Plain supervised finetuning (the base, target and retain stages), TOFU's recipe.

TOFU ``finetune.py``: AdamW, weight decay, a fixed number of epochs over the QA set, a warmup
of one tenth of the steps, then linear decay; loss = answer-token NLL (question masked).

Plain single-process training on one device, never a collective: under several processes the
stages are built by the main process alone (the others wait, then read the stage cache; see
:mod:`unlearn.distributed`), so nothing here may wait for the other processes.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from unlearn.data import Feature, collate
from unlearn.losses import lm_loss
from unlearn.schedulers import build_scheduler

log = logging.getLogger(__name__)


def finetune(
    model: torch.nn.Module,
    features: Sequence[Feature],
    recipe: Mapping[str, Any],
    pad_id: int,
    seed: int,
    desc: str = "finetune",
    device: torch.device | str | None = None,
    resume_dir: Path | None = None,
) -> list[float]:
    """Train in place on ``device`` (default: this process's GPU if there is one, else the CPU);
    return the mean loss of each epoch.

    ``resume_dir``: after every epoch the whole training state (weights, optimizer, the order's
    random stream, torch's RNG, the epoch losses) is saved there atomically; a later call with
    the same arguments and folder continues after the last saved epoch and ends with the weights
    an uninterrupted call gives (bit for bit on the CPU)."""
    if not features:
        raise ValueError(f"{desc}: no training examples")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    bs = int(recipe["batch_size"])
    epochs = int(recipe["epochs"])
    steps_per_epoch = math.ceil(len(features) / bs)
    total = steps_per_epoch * epochs
    optim = torch.optim.AdamW(
        model.parameters(), lr=float(recipe["lr"]), weight_decay=float(recipe["weight_decay"])
    )
    sched = build_scheduler(
        {"name": "linear", "warmup_ratio": float(recipe.get("warmup_ratio", 0.1))}, float(recipe["lr"]), total
    )
    model.train()
    gen = torch.Generator().manual_seed(seed)
    epoch_losses: list[float] = []
    step = 0
    saved = _load_state(resume_dir, desc, total)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        gen.set_state(saved["order_rng"])
        torch.set_rng_state(saved["torch_rng"])
        epoch_losses, step = list(saved["epoch_losses"]), int(saved["step"])
        log.info("%s: resuming after epoch %d of %d (%s)", desc, len(epoch_losses), epochs, resume_dir)
    bar = tqdm(total=total, initial=step, desc=desc, leave=False)
    for _ in range(len(epoch_losses), epochs):
        order = torch.randperm(len(features), generator=gen).tolist()
        total_loss, n = 0.0, 0
        for i in range(0, len(order), bs):
            batch = collate([features[j] for j in order[i : i + bs]], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            for g in optim.param_groups:
                g["lr"] = sched.lr(step)
            loss = lm_loss(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: non-finite loss at step {step}")
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            value = loss.item()
            total_loss += value
            n += 1
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        epoch_losses.append(total_loss / n)
        if resume_dir is not None and len(epoch_losses) < epochs:
            _save_state(resume_dir, {"model": model.state_dict(), "optim": optim.state_dict(), "order_rng": gen.get_state(),
                                     "torch_rng": torch.get_rng_state(), "epoch_losses": epoch_losses, "step": step,
                                     "total": total})
    bar.close()
    log.info("%s: %d steps, epoch losses %s", desc, total, ", ".join(f"{x:.3f}" for x in epoch_losses))
    model.eval()
    return epoch_losses


STATE = "train_state.pt"


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    """Atomically (a temporary file renamed over the last one): a kill mid-write keeps the last epoch."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / STATE)


def _load_state(folder: Path | None, desc: str, total: int) -> dict[str, Any] | None:
    path = Path(folder) / STATE if folder is not None else None
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("total") != total:  # another recipe wrote it (the cache key makes this unlikely)
        log.warning("%s: %s was saved by another recipe: not resumed", desc, path)
        return None
    return state


def default_device() -> torch.device:
    """The current CUDA device (a launcher sets it per process) if there is a GPU, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
