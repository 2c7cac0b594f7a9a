"""QA examples -> token features with TOFU's exact masking, and a padding collator.

TOFU ``data_module.convert_raw_data_to_model_format``: the full text is tokenized with special
tokens (BOS) and truncated to ``max_length``; labels are ``input_ids + [EOS]`` (EOS is scored)
unless the text filled ``max_length`` (or a chat template ended it with EOS already); the prompt's
label positions are -100 (how they are counted: :mod:`unlearn.templates`). We keep the appended EOS position as an input position with attention 0 (as TOFU's EOS
padding does), so the shifted loss scores EOS from the last answer token.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import torch

from unlearn.templates import Template

if TYPE_CHECKING:  # annotations only: importing transformers takes seconds a config error should not wait
    from transformers import PreTrainedTokenizerBase

Feature = dict[str, list[int]]


def encode_qa(
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    question: str,
    answer: str,
    max_length: int,
    rule: str = "tofu",
) -> Feature:
    """``rule="open_unlearning"`` (its ``preprocess_chat_instance``): the prompt measured alone
    (:mod:`unlearn.templates`), and EOS appended whenever the text does not end with it, truncated
    or not."""
    ids, n_prompt = template.tokenize(tokenizer, question, answer, max_length, rule)
    return qa_feature(ids, n_prompt, tokenizer.eos_token_id, max_length, rule)


def qa_feature(ids: Sequence[int], n_prompt: int, eos: int, max_length: int, rule: str = "tofu") -> Feature:
    """The feature of a tokenized QA text (:meth:`unlearn.templates.PromptTemplate.tokenize`'s
    ids and prompt length): EOS appended and scored, the prompt masked."""
    ids = list(ids)
    room = len(ids) < max_length or rule == "open_unlearning"
    if room and ids[-1] != eos:  # a chat template may end its turn with EOS itself
        input_ids = ids + [eos]
        attention = [1] * len(ids) + [0]
        labels = ids + [eos]
    else:  # truncated (no EOS, as in TOFU), or the template's own EOS, scored as it stands
        input_ids, attention, labels = list(ids), [1] * len(ids), list(ids)
    n_mask = min(n_prompt, len(labels))
    labels = [-100] * n_mask + labels[n_mask:]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str, max_length: int) -> Feature:
    """A raw-text chunk for causal-LM training: every token after BOS is scored."""
    ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] + ids[1:]}


def encode_rows(
    tokenizer: PreTrainedTokenizerBase,
    template: Template,
    rows: Iterable[Mapping[str, str]],
    max_length: int,
    answer_key: str = "answer",
    rule: str = "tofu",
) -> list[Feature]:
    """:func:`encode_qa` of each row, tokenized in one batch."""
    pairs = [(r["question"], r[answer_key]) for r in rows]
    return [qa_feature(ids, n, tokenizer.eos_token_id, max_length, rule)
            for ids, n in template.tokenize_many(tokenizer, pairs, max_length, rule)]


def collate(features: Sequence[Feature], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest feature: pad id with attention 0, labels -100."""
    n = max(len(f["input_ids"]) for f in features)
    out = {
        "input_ids": torch.full((len(features), n), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), n), dtype=torch.long),
        "labels": torch.full((len(features), n), -100, dtype=torch.long),
    }
    for i, f in enumerate(features):
        k = len(f["input_ids"])
        out["input_ids"][i, :k] = torch.tensor(f["input_ids"])
        out["attention_mask"][i, :k] = torch.tensor(f["attention_mask"])
        out["labels"][i, :k] = torch.tensor(f["labels"])
    return out
