"""Four-choice question accuracy by log-likelihood, as lm-evaluation-harness scores a
``multiple_choice`` task (``acc``): per question, the summed log-probability of each choice as a
continuation of the prompt; the prediction is the most likely choice.

Prompt and continuations are those of lm-evaluation-harness's ``mmlu_continuation`` task
(``tasks/mmlu/continuation``): the cloze prompt ``"Question: {question.strip()}\\nAnswer:"``, each
choice's text after the task's target delimiter, a space. (Its ``wmdp_*`` and ``mmlu`` tasks list
the choices in the prompt and score the letters A-D instead, a format a model of a million
parameters cannot use: :mod:`unlearn.benchmarks.wmdp` says why the embedded world scores the cloze
form. WMDP's and MMLU's published accuracies are the letter form's; on a real model the cloze
accuracies here are a different number.)

Tokenization mirrors lm-evaluation-harness 0.4 (``TemplateLM._encode_pair`` with HFLM's
``tok_encode``): trailing spaces of the context move to the continuation; context and
context + continuation are each tokenized with the tokenizer's special tokens (a BOS for Llama's);
the continuation's tokens are those of the whole past the context's length (the tokens the model
sees after the prompt in running text), scored after the context's own tokens. A sequence longer than the model's length
keeps its last ``max_length + 1`` tokens (``_loglikelihood_tokens`` truncates from the left).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from eval.likelihood import score
from eval.per_item import indexed
from unlearn.data import Feature

PROMPT = "Question: {question}\nAnswer:"
TARGET_DELIMITER = " "  # lm-evaluation-harness's default target_delimiter
CHANCE = 0.25


def prompt(question: str) -> str:
    return PROMPT.format(question=question.strip())


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) as lm-evaluation-harness's ``_encode_pair`` splits them."""
    if not context:
        raise ValueError("a question's prompt is empty")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = tokenizer(context + continuation)["input_ids"]
    context_ids = tokenizer(context)["input_ids"]
    return context_ids, whole[len(context_ids):]


def pair_feature(context_ids: Sequence[int], continuation_ids: Sequence[int], max_length: int) -> Feature:
    """The sequence and labels that score ``continuation_ids`` after ``context_ids`` (only the
    continuation labelled), cut from the left to ``max_length + 1`` tokens."""
    ids = (list(context_ids) + list(continuation_ids))[-(max_length + 1):]
    n = len(continuation_ids)
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * (len(ids) - n) + ids[len(ids) - n:]}


def answer_feature(tokenizer, row: Mapping[str, Any], max_length: int) -> Feature:
    """The prompt followed by the right choice, only the choice's tokens labelled: the sequence the
    evaluation scores for the right answer, as a training example."""
    return pair_feature(*encode_pair(tokenizer, prompt(row["question"]),
                                     TARGET_DELIMITER + row["choices"][row["answer"]]), max_length)


def choice_features(tokenizer, rows: Sequence[Mapping[str, Any]], max_length: int) -> list[Feature]:
    """Four features per question (row-major): the prompt, then each choice."""
    return [pair_feature(*encode_pair(tokenizer, prompt(r["question"]), TARGET_DELIMITER + c), max_length)
            for r in rows for c in r["choices"]]


def choice_logliks(model, tokenizer, rows: Sequence[Mapping[str, Any]], batch_size: int,
                   max_length: int) -> np.ndarray:
    """(questions, 4) summed log-probabilities of each choice; the four choices of a question share
    its prompt, which one cached forward pass runs (:func:`eval.likelihood.score`)."""
    feats = choice_features(tokenizer, rows, max_length)
    s = score(model, feats, batch_size, tokenizer.pad_token_id, share_prefixes=True)
    return -s.sums.reshape(len(rows), -1)


def accuracy_log(logliks: np.ndarray, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-question log in TOFU's per-sample layout: each choice's log-likelihood, the prediction
    (the first of the most likely, as ``np.argmax`` and lm-evaluation-harness pick), the answer and
    whether they agree."""
    pred = np.argmax(logliks, axis=1)
    answers = np.array([int(r["answer"]) for r in rows])
    out = {"choice_loglik": indexed(logliks), "pred": indexed(pred), "answer": indexed(answers),
           "correct": indexed((pred == answers).astype(float))}
    if rows and "subject" in rows[0]:
        out["subject"] = indexed([r["subject"] for r in rows])
    return out


def question_log(model, tokenizer, rows: Sequence[Mapping[str, Any]], batch_size: int, max_length: int) -> dict[str, Any]:
    return accuracy_log(choice_logliks(model, tokenizer, rows, batch_size, max_length), rows)


def accuracy(log: Mapping[str, Any]) -> float:
    """Mean of ``correct`` over the questions (lm-evaluation-harness's ``acc``)."""
    return float(np.mean([log["correct"][k] for k in log["correct"]]))


def accuracy_by_subject(log: Mapping[str, Any]) -> dict[str, float]:
    """``acc`` per MMLU subject (lm-evaluation-harness reports these below its ``mmlu`` group)."""
    by: dict[str, list[float]] = {}
    for k, subject in log.get("subject", {}).items():
        by.setdefault(subject, []).append(log["correct"][k])
    return {s: float(np.mean(v)) for s, v in sorted(by.items())}
