"""The interface every benchmark implements (:class:`Benchmark`) and the registry they join
(:data:`BENCHMARKS`); :func:`unlearn.benchmarks.get_benchmark` imports a benchmark's module when it is first asked for."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from eval.compat import apply_compat
from eval.lm_eval import step as lm_eval_step
from unlearn.registry import Registry

BENCHMARKS: Registry[type["Benchmark"]] = Registry("benchmark")


class Benchmark:
    """What a benchmark does. The four methods that read ``cfg.eval`` (:meth:`eval_spec`,
    :meth:`evaluate`, :meth:`reference`, :meth:`summarize`) put ``eval.compat``'s settings in place
    first (:func:`eval.compat.apply_compat`, idempotent): a config composed without passing through
    ``run()`` evaluates as a run evaluates it, never with one mode's masks and the other's
    generation settings. A benchmark implements their underscored twins; the lm-eval tasks of
    ``eval.lm_eval`` (:mod:`eval.lm_eval.step`) join its key, its full evaluation and its summary
    here, the same for every benchmark."""
    name = ""
    table_columns: list[str] = []

    def prepare(self, cfg: DictConfig, cache) -> Any:
        """Data, tokenizer and model locations (a :class:`unlearn.preparation.Prepared`)."""
        raise NotImplementedError

    def unlearning_data(self, prepared) -> tuple[list, list, list, list]:
        """(forget rows, retain rows, forget features, retain features) for the engine."""
        raise NotImplementedError

    def answer_feature(self, prepared, row, answer: str | None, prefix_tokens: int) -> dict[str, list[int]]:
        """The feature of an unlearning row's prompt followed by ``answer`` (``None``: the row's own
        answer), only the answer's tokens scored: what IDK and IDK-DPO train on
        (``MethodContext.encode``). ``prefix_tokens``: the prompt length of a row without a question
        (raw text)."""
        raise NotImplementedError

    def method_context(self, prepared):
        """(the methods' :class:`unlearn.methods.MethodContext`, forget features, retain features):
        the unlearning data, how to encode an alternative answer, the frozen reference (the target)."""
        import torch

        from unlearn.methods import MethodContext
        from unlearn.models import frozen

        forget_rows, retain_rows, forget, retain = self.unlearning_data(prepared)
        context = MethodContext(
            encode=lambda row, answer, prefix_tokens: self.answer_feature(prepared, row, answer, prefix_tokens),
            forget_rows=forget_rows, retain_rows=retain_rows, forget_features=forget, retain_features=retain,
            pad_id=prepared.tokenizer.pad_token_id, device=torch.device("cpu"),
            load_reference=lambda: frozen(prepared.load("target")),
        )
        return context, forget, retain

    def sources(self, cfg: DictConfig) -> list:
        """The data locations this benchmark reads besides those every run names (``dataset.path`` /
        ``dataset.hub_id``, the models): :class:`unlearn.sources.Source` s checked before any work."""
        return []

    def lm_eval_requests(self, cfg: DictConfig) -> list[tuple[str, list[str], str | None]]:
        """The lm-eval tasks this run's evaluation asks for by name, as (config key, names, the
        include_path beside that key): checked before any work, with the Hub data they read
        (:mod:`unlearn.validation`)."""
        return lm_eval_step.requests(cfg.eval)

    def eval_spec(self, cfg: DictConfig) -> dict[str, Any]:
        """The eval settings that change results (part of the cached reference evals' key)."""
        cfg = apply_compat(cfg)
        return {**self._eval_spec(cfg), **lm_eval_step.spec(cfg.eval)}

    def evaluate(self, model, prepared, cfg: DictConfig, *, cheap: bool = False) -> dict[str, Any]:
        """Per-example logs of one model; ``cheap``: the trajectory subset (no lm-eval tasks)."""
        cfg = apply_compat(cfg)
        logs = self._evaluate(model, prepared, cfg, cheap=cheap)
        return logs if cheap else {**logs, **lm_eval_step.evaluate(model, prepared.tokenizer, cfg.eval)}

    def reference(self, logs: dict[str, Any], cfg: DictConfig) -> tuple[Any, str | None]:
        """What the metrics of every model are measured against, and a description of it."""
        return self._reference(logs, apply_compat(cfg))

    def summarize(self, logs: dict[str, Any], reference: Any, cfg: DictConfig) -> dict[str, Any]:
        own, harness = lm_eval_step.split(logs)
        return {**self._summarize(own, reference, apply_compat(cfg)), **lm_eval_step.summary(harness)}

    def _eval_spec(self, cfg: DictConfig) -> dict[str, Any]:
        raise NotImplementedError

    def _evaluate(self, model, prepared, cfg: DictConfig, *, cheap: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _reference(self, logs: dict[str, Any], cfg: DictConfig) -> tuple[Any, str | None]:
        raise NotImplementedError

    def _summarize(self, logs: dict[str, Any], reference: Any, cfg: DictConfig) -> dict[str, Any]:
        raise NotImplementedError
