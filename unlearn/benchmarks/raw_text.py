"""Raw-text corpora as unlearning data, shared by the benchmarks that unlearn documents (MUSE,
WMDP): MUSE's fixed-length chunks (``baselines/dataset.py`` ``DefaultDataset``; open-unlearning's
``PretrainingDataset`` cuts its WMDP corpora the same way), their rows and features, and the
(prompt, answer) feature IDK and IDK-DPO need of a chunk (see :mod:`unlearn.benchmarks.muse`).
"""
from __future__ import annotations

from typing import Sequence

from unlearn.data import Feature, encode_text

DOC_SEPARATOR = "\n\n"  # between the documents of a corpus joined into one text (MUSE reads one .txt file)


class TextRow(dict):
    """An unlearning row of a raw-text corpus: ``{"text": chunk}``. A method that reads TOFU's QA
    fields from it gets an error that says where its prompt and answer are, not a bare
    ``KeyError: 'question'``."""

    def __missing__(self, key):
        raise KeyError(f"raw-text unlearning rows are chunks ({', '.join(self)}); they have no {key!r}: "
                       "a method gets a row's (prompt, answer) feature from MethodContext.encode")


def text_chunks(tokenizer, texts: Sequence[str], chunk_length: int) -> list[str]:
    """MUSE's fixed-length chunks of a corpus, as texts: the documents joined and tokenized without
    special tokens, a cut before every ``chunk_length - 1``-th token (the BOS takes the last place).

    Chunks are sliced from the corpus where the previous chunk's last token ends (so a word's
    leading space stays with it, as the tokenizer saw it), and together they are exactly the corpus
    (decoding token slices instead could split a multi-byte character). Re-encoding
    a chunk (:func:`encode_text`) gives back its tokens except where a cut splits a word, whose
    pieces may merge differently: a token more or less at a chunk's ends.
    """
    if chunk_length < 2:
        raise ValueError(f"dataset.chunk_length must be >= 2 (BOS + a token), got {chunk_length}")
    corpus = DOC_SEPARATOR.join(texts)
    offsets = tokenizer(corpus, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    cuts = [0] + [offsets[i - 1][1] for i in range(chunk_length - 1, len(offsets), chunk_length - 1)] + [len(corpus)]
    return [corpus[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def prompt_answer_feature(prompt: list[int], answer: list[int], max_length: int) -> Feature:
    """``prompt + answer`` token ids cut to ``max_length``, only the answer scored."""
    ids = (prompt + answer)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ([-100] * len(prompt) + answer)[:max_length]}


def split_chunk(tokenizer, text: str, chunk_length: int, prefix_tokens: int) -> tuple[list[int], list[int]]:
    """A chunk's unlearning-feature ids (:func:`encode_text`) cut into the prompt, BOS and the first
    ``prefix_tokens`` tokens (at most all but the last: the continuation is never empty), and the
    continuation, the rest."""
    ids = encode_text(tokenizer, text, chunk_length)["input_ids"]
    k = 1 + min(prefix_tokens, len(ids) - 2)
    return ids[:k], ids[k:]


def running_text_ids(tokenizer, text: str) -> list[int]:
    """``text``'s tokens where it follows a word and a space, however the tokenizer marks a word's
    leading space: a byte-level BPE on the word's first token; SentencePiece (Llama-2) prefixes every
    text with one itself, so ``tokenizer(" " + text)`` would get a second, as a token of its own."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
    ids = tokenizer("a " + text, add_special_tokens=False)["input_ids"]
    if ids[:len(anchor)] != anchor:
        raise ValueError(f"the tokenizer merges {text!r} into the word before it: cannot tokenize it as running text")
    return ids[len(anchor):]


def chunk_rows(tokenizer, texts: Sequence[str], chunk_length: int) -> tuple[list[TextRow], list[Feature]]:
    """A corpus's unlearning rows (:func:`text_chunks`) and their features (every token scored)."""
    rows = [TextRow(text=c) for c in text_chunks(tokenizer, texts, chunk_length)]
    return rows, [encode_text(tokenizer, r["text"], chunk_length) for r in rows]


def chunk_answer_feature(tokenizer, row, answer: str | None, chunk_length: int, prefix_tokens: int) -> Feature:
    """A chunk's prompt, then its continuation (``answer=None``) or ``answer`` as running text:
    :meth:`unlearn.benchmarks.Benchmark.answer_feature` of a raw-text row."""
    prompt, continuation = split_chunk(tokenizer, row["text"], chunk_length, prefix_tokens)
    return prompt_answer_feature(prompt, continuation if answer is None else running_text_ids(tokenizer, answer),
                                 chunk_length)
