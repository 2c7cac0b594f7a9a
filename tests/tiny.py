"""The tiny model and synthetic features the engine-level tests share (no tokenizer, no world)."""
from __future__ import annotations

import torch

from unlearn.models import build_tiny_llama

ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 64}


class Tok:
    """What build_tiny_llama reads from a tokenizer: a vocabulary of 50, BOS 1, EOS 2, pad 0."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __len__(self):
        return 50


def tiny_llama(seed: int = 0):
    return build_tiny_llama(ARCH, Tok(), seed=seed)


def varied_features(n: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples of different lengths (5..16 tokens, 3 prompt tokens masked): processes and
    micro-batches hold different token counts, so a mean of their token means is not the batch's."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(5, 17, (1,), generator=g))
        ids = [1] + torch.randint(3, 50, (k - 1,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * k, "labels": [-100] * 3 + ids[3:]})
    return out


def fixed_features(n: int, seed: int) -> list[dict[str, list[int]]]:
    """Examples of 12 tokens, the first 4 masked."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 50, (12,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * 12, "labels": [-100] * 4 + ids[4:]})
    return out
