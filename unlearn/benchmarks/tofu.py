"""TOFU: QA pairs, forget quality against the retain model, model utility (METRICS.md §1)."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from eval.tofu.evaluate import EVAL_VERSION, evaluate_tofu, summarize
from unlearn.benchmarks.base import BENCHMARKS, Benchmark
from unlearn.preparation import prepare


@BENCHMARKS.register("tofu")
class Tofu(Benchmark):
    name = "tofu"
    table_columns = ["forget_quality", "model_utility", "forget_rouge", "forget_truth_ratio", "forget_prob",
                     "retain_prob", "retain_rouge"]

    def prepare(self, cfg: DictConfig, cache):
        return prepare(cfg, cache)

    def unlearning_data(self, prepared):
        data = prepared.data
        forget_rows, retain_rows = list(data.rows(data.split)), list(data.rows(data.retain_split))
        return (forget_rows, retain_rows, prepared.features(forget_rows, train=True),
                prepared.features(retain_rows, train=True))

    def answer_feature(self, prepared, row, answer, prefix_tokens):
        """The question in the run's template, then ``answer`` (``prefix_tokens`` is unused: a QA row
        has its prompt); the row's own answer gives exactly its unlearning feature."""
        qa = {"question": row["question"], "answer": row["answer"] if answer is None else answer}
        return prepared.features([qa], train=True)[0]

    def _eval_spec(self, cfg: DictConfig) -> dict[str, Any]:
        return {"version": EVAL_VERSION, "template": cfg.model.template,
                **{k: cfg.eval.get(k) for k in ("ds_size", "batch_size", "generation", "mia", "compat")}}

    def _evaluate(self, model, prepared, cfg: DictConfig, *, cheap: bool) -> dict[str, Any]:
        generate = not cheap or bool(cfg.eval.get("trajectory_generate", False))
        return evaluate_tofu(model, prepared, cfg.eval, generate=generate)

    def _reference(self, logs: dict[str, Any], cfg: DictConfig):
        """The retain model's forget-set log (forget quality), or published logs given by path."""
        if cfg.eval.get("retain_logs"):
            from eval.tofu.logs import load_retain_logs

            return load_retain_logs(cfg.eval.retain_logs), str(cfg.eval.retain_logs)
        if "retain" in logs:
            return logs["retain"]["forget"], "retain model"
        return None, None

    def _summarize(self, logs: dict[str, Any], reference: Any, cfg: DictConfig) -> dict[str, Any]:
        return summarize(logs, reference, cfg.eval)
