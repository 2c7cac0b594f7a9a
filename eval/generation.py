"""Batched greedy generation with a KV cache; each sequence stops at EOS.

Two length conventions (METRICS.md §1.4): ``total_length`` is TOFU's ``generate(max_length=200)``,
where the budget counts the batch's left-padded prompt (so new tokens = max_length - padded prompt
length); ``new_tokens`` is open-unlearning's ``max_new_tokens``. Prompts are grouped by length so
batches carry little padding. Output is decoded with ``skip_special_tokens=True``; optional stop
strings cut the decoded text at their first occurrence (MUSE's KnowMem post-processing).
"""
from __future__ import annotations

from typing import Sequence

import torch
from transformers import PreTrainedTokenizerBase

MODES = ("total_length", "new_tokens")


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """Text up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


@torch.inference_mode()
def greedy_generate(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    batch_size: int,
    mode: str = "new_tokens",
    max_new_tokens: int = 200,
    max_length: int = 200,
    stop_strings: Sequence[str] = (),
) -> list[str]:
    if mode not in MODES:
        raise ValueError(f"unknown generation mode {mode!r}; valid: {', '.join(MODES)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    encoded = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        width = max(len(encoded[j]) for j in idx)
        budget = max_new_tokens if mode == "new_tokens" else max_length - width
        if budget <= 0:
            continue
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        att = torch.zeros((len(idx), width), dtype=torch.long)
        for row, j in enumerate(idx):  # left padding, as generation needs
            ids[row, width - len(encoded[j]) :] = torch.tensor(encoded[j])
            att[row, width - len(encoded[j]) :] = 1
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=att.to(device), max_new_tokens=budget, do_sample=False,
            use_cache=True, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id,
        )
        texts = tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True)
        for j, t in zip(idx, texts):
            out[j] = cut_at_stops(t, stop_strings) if stop_strings else t
    model.train(was_training)
    return out
