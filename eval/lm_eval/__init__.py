"""lm-evaluation-harness as an evaluator: its tasks run on the model object in hand.

Importing this package does not import lm-eval; :func:`run_tasks` does, when called.

* :func:`run_tasks(model, tokenizer, tasks, *, include_path=None, batch_size=16, limit=None,
  num_fewshot=0) <eval.lm_eval.harness.run_tasks>` -- lm-eval's ``HFLM`` wraps the model (a
  ``PreTrainedModel``, a PEFT model, ...) and tokenizer as they are, no re-load; the model comes
  back unchanged (modes, random states), lm-eval's output goes to the run log. ``tasks``: names
  (task YAMLs in ``include_path``, else lm-eval's own tasks, whose data it fetches) or task configs.
  Returns per task ``{"metrics": {"acc": ...}, "n": ..., "items": {"doc_id", "gold", "pred",
  "loglikelihoods", "acc", ...}}`` (items in TOFU's ``{"0": v0, ...}`` layout).
* :func:`local_task(name, data_file, style="letter", *, description=None, fewshot_file=None)
  <eval.lm_eval.tasks.local_task>` -- a ``multiple_choice`` task config over a local question file
  in WMDP's / MMLU's format (JSON lines ``{"question", "choices", "answer"}``, MMLU's with
  ``subject``): ``style="letter"`` is the harness's WMDP/MMLU prompt (options A-D, answer letter),
  ``style="cloze"`` MMLU's continuation prompt (the option's text as the answer; ``acc`` and
  ``acc_norm``). :func:`write_task(task, folder) <eval.lm_eval.tasks.write_task>` writes it where
  ``include_path`` finds it.

In a TOFU or MUSE run, ``eval.lm_eval.tasks=[...]`` (:mod:`eval.lm_eval.step`) adds the tasks to
every model's full evaluation: the record's ``metrics.<model>.summary`` gets ``lm_eval/<task>/acc``
(a column of ``python -m eval.report`` tables) and ``metrics.<model>.logs.lm_eval`` the per-item
results. docs/evaluation.md#lm-evaluation-harness.

    from eval.lm_eval import local_task, run_tasks
    task = local_task("bio_forget", "world/bio_questions.jsonl", style="cloze")
    results = run_tasks(model, tokenizer, [task], batch_size=32)
    results["bio_forget"]["metrics"]["acc"]
"""
from __future__ import annotations

from eval.lm_eval.harness import run_tasks
from eval.lm_eval.tasks import MMLU_DESCRIPTION, STYLES, local_task, read_questions, write_task

__all__ = ["run_tasks", "local_task", "write_task", "read_questions", "STYLES", "MMLU_DESCRIPTION"]
