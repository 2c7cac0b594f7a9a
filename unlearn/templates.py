"""Prompt templates: how a (question, answer) pair becomes the text a model is scored on, which of
its tokens are the prompt (masked), and the prompt generation starts from.

Two kinds, chosen by ``model.template``:

* :class:`PromptTemplate` -- TOFU's tags: text = question_start_tag + q + question_end_tag +
  answer_tag + a. Everything up to and including ``question_end_tag`` is the prompt (masked); the
  answer tag is scored, as TOFU does for phi (METRICS.md §1.2); the prompt is measured by
  tokenizing it alone with special tokens (TOFU's ``convert_raw_data_to_model_format``). TOFU and
  open-unlearning configure Llama-2-chat this way too (``[INST] `` / `` [/INST]``, no answer tag).
* :class:`ChatTemplate` (``model.template.chat: true``) -- the tokenizer's own chat template
  (``apply_chat_template``), with an optional system prompt and ``date_string``, as open-unlearning
  configures Llama-3.x-Instruct. The text is the templated conversation [system, user q,
  assistant a]; the prompt is the templated [system, user q] with the generation prompt (the
  assistant header), which must be a prefix of it. The masked tokens are those lying wholly
  inside the prompt's characters of the *full* text's tokenization, so the scored tokens are
  exactly the answer's tokens (and the template's end-of-turn token) as tokenized inside the full
  text -- TOFU's rule, for any template, even where a prompt ending in a space would merge into
  the answer's first token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # annotations only: transformers takes seconds to import
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PromptTemplate:
    """TOFU's prompt pieces: text = question_start + q + question_end + answer_tag + a."""

    question_start_tag: str
    question_end_tag: str
    answer_tag: str

    def prompt(self, question: str) -> str:
        return self.question_start_tag + question + self.question_end_tag

    def full(self, question: str, answer: str) -> str:
        return self.prompt(question) + self.answer_tag + answer

    def tokenize(self, tokenizer: PreTrainedTokenizerBase, question: str, answer: str,
                 max_length: int, rule: str = "tofu") -> tuple[list[int], int]:
        """(token ids of the full text, cut at ``max_length``; how many leading ones are the prompt).

        ``rule`` (:data:`MASK_RULES`): ``tofu`` counts the prompt before the answer tag;
        ``open_unlearning`` the prompt with the answer tag, tokenized alone (its phi-1.5 "Answer: "
        ends in a lone space token, so the first answer token falls into the mask)."""
        return self.tokenize_many(tokenizer, [(question, answer)], max_length, rule)[0]

    def tokenize_many(self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]],
                      max_length: int, rule: str = "tofu") -> list[tuple[list[int], int]]:
        """:meth:`tokenize` of each (question, answer) pair, in two tokenizer calls: the full texts,
        and each distinct prompt once (a tokenizer encodes a list text by text, the same ids)."""
        tag = self.answer_tag if _check_rule(rule) == "open_unlearning" else ""
        kw = dict(add_special_tokens=True, truncation=True, max_length=max_length)
        full = tokenizer([self.full(q, a) for q, a in pairs], **kw)["input_ids"] if pairs else []
        prompts = [self.prompt(q) + tag for q, _ in pairs]
        distinct = list(dict.fromkeys(prompts))
        n = dict(zip(distinct, map(len, tokenizer(distinct, **kw)["input_ids"] if distinct else [])))
        return [(list(ids), n[p]) for ids, p in zip(full, prompts)]

    def generation_prompt(self, tokenizer: PreTrainedTokenizerBase, question: str,
                          answer_tag: bool = False) -> tuple[str, list[int]]:
        """The text generation starts from and its ids: TOFU's prompt ends before the answer tag,
        open-unlearning's (``answer_tag``) includes it."""
        return self.generation_prompts(tokenizer, [question], answer_tag)[0]

    def generation_prompts(self, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                           answer_tag: bool = False) -> list[tuple[str, list[int]]]:
        """:meth:`generation_prompt` of each question, in one tokenizer call."""
        texts = [self.prompt(q) + (self.answer_tag if answer_tag else "") for q in questions]
        return list(zip(texts, tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else []))


@dataclass(frozen=True)
class ChatTemplate:
    """The tokenizer's chat template over [system?, user q, assistant a]."""

    system_prompt: str | None = None
    date_string: str | None = None  # Llama-3.x's "Today Date" (open-unlearning: "10 Apr 2025")

    def _messages(self, question: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return system + [{"role": "user", "content": question}]

    def _render(self, tokenizer: PreTrainedTokenizerBase, messages, generation: bool) -> str:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"model.template.chat=true, but the tokenizer {tokenizer.name_or_path!r} has no chat "
                             "template: give the tags (question_start_tag, question_end_tag, answer_tag) instead")
        extra = {"date_string": self.date_string} if self.date_string is not None else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation, **extra)

    def texts(self, tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> tuple[str, str]:
        """(the templated prompt with its generation header, the templated conversation)."""
        prompt = self._render(tokenizer, self._messages(question), True)
        full = self._render(tokenizer, self._messages(question) + [{"role": "assistant", "content": answer}], False)
        if not full.startswith(prompt):
            raise ValueError("the chat template's generation prompt is not a prefix of the conversation it renders, "
                             f"so the answer cannot be told apart: {prompt[-40:]!r} vs {full[len(prompt) - 40:len(prompt)]!r}")
        return prompt, full

    def tokenize(self, tokenizer: PreTrainedTokenizerBase, question: str, answer: str,
                 max_length: int, rule: str = "tofu") -> tuple[list[int], int]:
        """``rule`` ``tofu``: the tokens lying wholly inside the prompt's characters of the full
        text; ``open_unlearning``: as many tokens as the prompt has tokenized alone."""
        prompt, full = self.texts(tokenizer, question, answer)
        # the template writes its own BOS (as apply_chat_template(tokenize=True) tokenizes it)
        if _check_rule(rule) == "open_unlearning":
            ids = tokenizer(full, add_special_tokens=False)["input_ids"]
            return list(ids), len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        enc = tokenizer(full, add_special_tokens=False, truncation=True, max_length=max_length,
                        return_offsets_mapping=True)
        n_prompt = sum(1 for _, end in enc["offset_mapping"] if end <= len(prompt))
        return list(enc["input_ids"]), n_prompt

    def tokenize_many(self, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]],
                      max_length: int, rule: str = "tofu") -> list[tuple[list[int], int]]:
        """:meth:`tokenize` of each (question, answer) pair."""
        return [self.tokenize(tokenizer, q, a, max_length, rule) for q, a in pairs]

    def generation_prompt(self, tokenizer: PreTrainedTokenizerBase, question: str,
                          answer_tag: bool = False) -> tuple[str, list[int]]:
        """The templated prompt up to the assistant header (``answer_tag`` has no meaning here)."""
        text = self._render(tokenizer, self._messages(question), True)
        return text, tokenizer(text, add_special_tokens=False)["input_ids"]

    def generation_prompts(self, tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                           answer_tag: bool = False) -> list[tuple[str, list[int]]]:
        """:meth:`generation_prompt` of each question."""
        return [self.generation_prompt(tokenizer, q, answer_tag) for q in questions]


Template = PromptTemplate | ChatTemplate

#: How the masked prompt is measured: TOFU's rule (the default) or open-unlearning's.
MASK_RULES = ("tofu", "open_unlearning")


def _check_rule(rule: str) -> str:
    if rule not in MASK_RULES:
        raise ValueError(f"unknown prompt-mask rule {rule!r}; valid: {', '.join(MASK_RULES)}")
    return rule


def build_template(cfg: Mapping[str, Any]) -> Template:
    """``model.template``: ``{chat: true, system_prompt, date_string}`` or TOFU's three tags."""
    if cfg.get("chat"):
        return ChatTemplate(cfg.get("system_prompt"), cfg.get("date_string"))
    return PromptTemplate(str(cfg["question_start_tag"]), str(cfg["question_end_tag"]), str(cfg["answer_tag"]))
