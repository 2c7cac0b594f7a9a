"""Read TOFU's own per-sample evaluation logs and aggregate them like TOFU does.

A TOFU run folder (``data/<run>/eval_results/ds_size300/`` in ``locuslab/tofu``) holds
one ``eval_*.json`` per task, each ``{metric: {"<idx>": value}}`` (schema:
``shared/reference/tofu_eval_logs/README.md`` and METRICS.md §1.8), plus
``eval_log_aggregated.json`` that nests the four as ``{task_file: log}``.

:func:`aggregate_tofu_run` reproduces ``aggregate_eval_stat.py`` (METRICS.md §1.3-1.7,
§3.1-3.2) on top of the pure functions in :mod:`eval.tofu.metrics`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Union

import numpy as np

from eval.per_item import log_array
from eval.tofu import metrics as tm

__all__ = [
    "TASK_FILES",
    "AGGREGATED_FILE",
    "REQUIRED_KEYS",
    "validate_tofu_log",
    "load_tofu_log",
    "load_tofu_run",
    "per_item_truth_ratios",
    "aggregate_tofu_run",
]

#: Short task name -> TOFU log file (METRICS.md §1.1).
TASK_FILES = {
    "retain": "eval_log.json",
    "forget": "eval_log_forget.json",
    "ra": "eval_real_author_wo_options.json",
    "wf": "eval_real_world_wo_options.json",
}
_FILE_TO_TASK = {v: k for k, v in TASK_FILES.items()}

#: The nested file written by TOFU's evaluate_util.py; it holds no aggregate numbers.
AGGREGATED_FILE = "eval_log_aggregated.json"

#: Metrics the aggregation reads. Other schema keys (gt_loss, truth_ratio,
#: generated_text, ...) are kept when present but not required.
REQUIRED_KEYS = ("avg_gt_loss", "average_perturb_loss", "avg_paraphrased_loss", "rougeL_recall")

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------
# loading / validation
# ----------------------------------------------------------------------------------------
def _index_key(k, source: str, metric: str) -> int:
    try:
        return int(k)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: metric {metric!r} has non-integer item index {k!r}") from None


def validate_tofu_log(log, source: str = "<log>", required: Iterable[str] = REQUIRED_KEYS) -> dict:
    """Check one per-sample log and return it with every metric ordered by item index.

    Raises ``ValueError`` naming ``source`` (the file) and the offending key when a
    required metric is missing, when metrics disagree on the item indices, or when the
    perturbed-loss lists are ragged. Item order is the integer index order (TOFU's own
    code relies on JSON order, which is always ascending in its logs).
    """
    if not isinstance(log, Mapping):
        raise ValueError(f"{source}: expected a JSON object {{metric: {{index: value}}}}, got {type(log).__name__}")
    missing = [k for k in required if k not in log]
    if missing:
        raise ValueError(f"{source}: missing key(s) {', '.join(map(repr, missing))}; "
                         f"present: {', '.join(sorted(map(str, log)))}")
    out: dict = {}
    ref_metric, ref_idx = None, None
    for metric, per_item in log.items():
        if not isinstance(per_item, Mapping):
            raise ValueError(f"{source}: metric {metric!r} must map item index -> value, got {type(per_item).__name__}")
        keyed = sorted(((_index_key(k, source, metric), k) for k in per_item), key=lambda t: t[0])
        idx = [i for i, _ in keyed]
        if ref_idx is None:
            ref_metric, ref_idx = metric, idx
        elif idx != ref_idx:
            raise ValueError(f"{source}: metric {metric!r} has item indices that differ from {ref_metric!r} "
                             f"({len(idx)} vs {len(ref_idx)} items)")
        out[metric] = {str(i): per_item[k] for i, k in keyed}
    if ref_idx is not None and not ref_idx:
        raise ValueError(f"{source}: log has no items")
    if "average_perturb_loss" in out:
        lengths = {len(v) if isinstance(v, (list, tuple)) else -1 for v in out["average_perturb_loss"].values()}
        if len(lengths) != 1 or min(lengths) < 1:
            raise ValueError(f"{source}: 'average_perturb_loss' must be a non-empty list of the same length "
                             f"for every item, got lengths {sorted(lengths)}")
    return out


def load_tofu_log(path: PathLike, required: Iterable[str] = REQUIRED_KEYS) -> dict:
    """Load and validate one TOFU ``eval_*.json`` per-sample log (see :func:`validate_tofu_log`)."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as f:
        try:
            obj = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
    return validate_tofu_log(obj, source=str(path), required=required)


def _load_aggregated(path: Path, tasks: Iterable[str]) -> dict[str, dict]:
    with path.open("r", encoding="utf-8") as f:
        obj = json.load(f)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected {{task_file: log}}, got {type(obj).__name__}")
    out = {}
    for task in tasks:
        fname = TASK_FILES[task]
        if fname not in obj:
            raise ValueError(f"{path}: missing task {fname!r} ({task}); present: {', '.join(sorted(obj))}")
        out[task] = validate_tofu_log(obj[fname], source=f"{path}[{fname}]")
    return out


def _check_tasks(tasks: Iterable[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASK_FILES]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; valid: {', '.join(TASK_FILES)}")
    return tasks


def load_tofu_run(run_dir: PathLike, tasks: Iterable[str] = tuple(TASK_FILES)) -> dict[str, dict]:
    """Load the task logs of one TOFU run as ``{"retain"|"forget"|"ra"|"wf": log}``.

    ``run_dir`` is a folder with the per-task files (:data:`TASK_FILES`), or a folder
    holding only ``eval_log_aggregated.json``, or that file itself. The per-task files
    win when all requested ones are present. ``tasks`` restricts what is loaded (e.g.
    ``("forget",)`` for a retain model that only serves as the FQ reference).
    """
    tasks = _check_tasks(tasks)
    p = Path(run_dir)
    if p.is_file():
        return _load_aggregated(p, tasks)
    if not p.is_dir():
        raise FileNotFoundError(f"TOFU run folder not found: {p}")
    missing = [TASK_FILES[t] for t in tasks if not (p / TASK_FILES[t]).is_file()]
    if not missing:
        return {t: load_tofu_log(p / TASK_FILES[t]) for t in tasks}
    if (p / AGGREGATED_FILE).is_file():
        return _load_aggregated(p / AGGREGATED_FILE, tasks)
    raise FileNotFoundError(f"{p}: missing {', '.join(missing)} and no {AGGREGATED_FILE}")


# ----------------------------------------------------------------------------------------
# per-item arrays
# ----------------------------------------------------------------------------------------
def per_item_truth_ratios(log: Mapping, variant: str = "geometric") -> np.ndarray:
    """Per-item R (perturbed over base) of one task log.

    Uses ``avg_paraphrased_loss`` (the base loader: paraphrase for retain/forget, the
    answer for RA/WF) with ``average_perturb_loss`` -- never ``avg_gt_loss``
    (METRICS.md §3.2). ``variant``: see :func:`eval.tofu.metrics.truth_ratio`.
    """
    return tm.truth_ratio(log_array(log, "avg_paraphrased_loss"),
                          log_array(log, "average_perturb_loss"), variant=variant)


# ----------------------------------------------------------------------------------------
# aggregation (aggregate_eval_stat.py)
# ----------------------------------------------------------------------------------------
def _coerce_run(run, tasks: tuple[str, ...], what: str) -> dict[str, dict]:
    """Path -> load; mapping keyed by task names or TOFU file names -> validated logs.

    A bare per-sample log (metric keys at the top level) is accepted when only the
    forget task is needed (the retain model's ``eval_log_forget.json``).
    """
    if isinstance(run, (str, os.PathLike)):
        return load_tofu_run(run, tasks)
    if not isinstance(run, Mapping):
        raise TypeError(f"{what}: expected a path or a mapping of task logs, got {type(run).__name__}")
    if tasks == ("forget",) and "avg_paraphrased_loss" in run:
        return {"forget": validate_tofu_log(run, source=f"{what} forget log")}
    by_task = {}
    for k, v in run.items():
        task = k if k in TASK_FILES else _FILE_TO_TASK.get(k)
        if task is not None:
            by_task[task] = v
    missing = [t for t in tasks if t not in by_task]
    if missing:
        raise ValueError(f"{what}: missing task log(s) {', '.join(missing)} "
                         f"(keys {', '.join(TASK_FILES)} or {', '.join(TASK_FILES.values())})")
    return {t: validate_tofu_log(by_task[t], source=f"{what}[{t}]") for t in tasks}


def aggregate_tofu_run(run_dir_or_logs, retain_run=None, *, tr_variant: str = "geometric") -> dict:
    """TOFU aggregate numbers of one run, with ``aggregate_eval_stat.py`` semantics.

    Returns a dict of floats:

    * the nine utility numbers :data:`eval.tofu.metrics.MODEL_UTILITY_KEYS`
      (``retain_prob`` = mean exp(-avg_gt_loss); ``ra_prob``/``wf_prob`` = option-normalised
      with ``avg_gt_loss`` and ``average_perturb_loss``; ``*_rouge`` = mean of the stored
      ``rougeL_recall``; ``*_truth_ratio`` = mean max(0, 1-R) with R from
      ``avg_paraphrased_loss`` and ``average_perturb_loss``) and ``model_utility`` (hmean);
    * ``forget_prob``, ``forget_rouge``, ``forget_truth_ratio`` (mean min(R, 1/R));
    * with ``retain_run``: ``forget_quality`` (exact two-sided KS p-value) and
      ``ks_statistic`` (D), from this run's forget-set R against the retain model's
      forget-set R.

    ``tr_variant`` selects the per-item R for the truth-ratio numbers ("geometric" =
    ``aggregate_eval_stat.py``, "arithmetic" = ``utils.py``). Forget quality always uses
    the geometric R, as both TOFU copies do (METRICS.md §1.6) -- and KS only depends on
    the ranks, which the two variants do not share, so this matters (R_arith >= R_geo per item, but not monotonically).

    ``run_dir_or_logs`` / ``retain_run``: a run folder (see :func:`load_tofu_run`), the
    dict it returns, a dict keyed by TOFU file names, or (for ``retain_run``) just the
    retain model's forget-set log.
    """
    if tr_variant not in tm.TR_VARIANTS:
        raise ValueError(f"unknown truth-ratio variant {tr_variant!r}; valid: {', '.join(tm.TR_VARIANTS)}")
    logs = _coerce_run(run_dir_or_logs, tuple(TASK_FILES), "run")
    eps = tm.tr_eps(tr_variant)
    out: dict[str, float] = {}
    for task in ("retain", "ra", "wf"):
        log = logs[task]
        if task == "retain":
            # 'eval_log' in the file name -> raw probability (aggregate_eval_stat.py L46-49)
            out[f"{task}_prob"] = tm.probability(log_array(log, "avg_gt_loss"))
        else:
            # RA/WF: answer-loader loss (avg_gt_loss), not the base-loader one (§3.2)
            out[f"{task}_prob"], _ = tm.normalized_probability(
                log_array(log, "avg_gt_loss"), log_array(log, "average_perturb_loss"), eps=eps)
        out[f"{task}_rouge"] = float(np.mean(log_array(log, "rougeL_recall")))
        out[f"{task}_truth_ratio"] = tm.truth_ratio_stat(per_item_truth_ratios(log, tr_variant), "utility", eps)
    out["model_utility"] = tm.model_utility(out)

    forget = logs["forget"]
    out["forget_prob"] = tm.probability(log_array(forget, "avg_gt_loss"))
    out["forget_rouge"] = float(np.mean(log_array(forget, "rougeL_recall")))
    out["forget_truth_ratio"] = tm.truth_ratio_stat(per_item_truth_ratios(forget, tr_variant), "forget", eps)

    if retain_run is not None:
        out["forget_quality"], out["ks_statistic"] = forget_quality_against(forget, retain_run, tr_variant)
    return out


def retain_truth_ratios(retain_run, tr_variant: str = "geometric") -> dict[str, float]:
    """The retain model's per-item forget truth ratios, ``{index: R}``, from any of the forms
    :func:`aggregate_tofu_run` takes or an open-unlearning ``TOFU_EVAL.json`` object
    (its ``forget_truth_ratio`` scores, as its ``ks_test`` reads them)."""
    from eval.ou.read import is_ou_eval, ou_truth_ratios

    if isinstance(retain_run, (str, os.PathLike)):
        retain_run = load_retain_logs(retain_run)
    if is_ou_eval(retain_run):
        return ou_truth_ratios(retain_run, "retain logs (open-unlearning)")
    if isinstance(retain_run, Mapping) and "avg_paraphrased_loss" in retain_run:  # what R needs, no more
        retain_forget = validate_tofu_log(retain_run, "retain forget log", ("avg_paraphrased_loss", "average_perturb_loss"))
    else:
        retain_forget = _coerce_run(retain_run, ("forget",), "retain_run")["forget"]
    R = per_item_truth_ratios(retain_forget, _fq_variant(tr_variant))
    return dict(zip(sorted(next(iter(retain_forget.values())), key=int), R.tolist()))


def _fq_variant(tr_variant: str) -> str:
    # forget quality: TOFU's geometric R whatever the reported variant; open-unlearning's own R
    return "open_unlearning" if tr_variant == "open_unlearning" else "geometric"


def forget_quality_against(forget_log: Mapping, retain_run, tr_variant: str = "geometric") -> tuple[float, float]:
    """(forget quality, KS D) of one forget-set log against the retain model's (any form of
    :func:`retain_truth_ratios`). The retain model must have been scored on the same forget split
    (METRICS.md §1.1): item sets that differ (forget05 vs forget10) would give a meaningless p."""
    ref = retain_truth_ratios(retain_run, tr_variant)
    own_idx = sorted(next(iter(forget_log.values())), key=int)
    if set(ref) != set(map(str, own_idx)):
        raise ValueError(f"the retain logs have {len(ref)} forget items with other indices than this run's "
                         f"{len(own_idx)}: not the same forget split or eval.ds_size")
    return tm.forget_quality(per_item_truth_ratios(forget_log, _fq_variant(tr_variant)), list(ref.values()))


# ----------------------------------------------------------------------------------------
# our records as TOFU runs, and the command line
# ----------------------------------------------------------------------------------------
def load_run_logs(path: PathLike, model: str = "unlearned", tasks: Iterable[str] = tuple(TASK_FILES)) -> dict[str, dict]:
    """Task logs from a TOFU run folder / aggregated file, or from one of our runs.

    Our ``record.json`` (or the run folder holding it) stores every model's logs in TOFU's
    per-sample schema under ``metrics.<model>.logs``; ``model`` picks target / retain / unlearned.
    """
    p = Path(path)
    record = p / "record.json" if p.is_dir() else p
    if record.name == "record.json" and record.is_file():
        rec = json.loads(record.read_text())
        metrics = rec.get("metrics") or {}
        if model not in metrics or not metrics[model]:
            raise ValueError(f"{record}: no logs for model {model!r}; present: {', '.join(metrics) or '(none)'}")
        logs = metrics[model]["logs"]
        return {t: validate_tofu_log(logs[t], source=f"{record}[{model}][{t}]", required=()) for t in _check_tasks(tasks)}
    return load_tofu_run(p, tasks)


def load_retain_logs(path: PathLike) -> dict:
    """The retain model's forget-set reference from ``path``: an open-unlearning ``TOFU_EVAL.json``
    (or a folder holding one), a TOFU eval folder, or one of our runs (its retain model)."""
    from eval.ou.read import load_ou_eval, ou_eval_file

    if ou_eval_file(path) is not None:
        return load_ou_eval(path)
    return load_run_logs(path, "retain", ("forget",))["forget"]


def main(argv: list[str] | None = None) -> None:
    """``python -m eval.tofu.logs RUN [--retain RETAIN] [--truth-ratio arithmetic]``: TOFU's
    aggregate numbers (model utility, forget quality, ...) of a TOFU log folder or one of our runs."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m eval.tofu.logs", description=main.__doc__)
    ap.add_argument("run", help="TOFU eval folder (eval_*.json), eval_log_aggregated.json, or our run dir / record.json")
    ap.add_argument("--retain", help="the retain model's logs (same forms, or open-unlearning's TOFU_EVAL.json), "
                                     "for forget quality")
    ap.add_argument("--model", default="unlearned", help="which model of our record (target | retain | unlearned)")
    ap.add_argument("--truth-ratio", default="geometric", choices=tm.TR_VARIANTS)
    args = ap.parse_args(argv)
    try:
        retain = load_retain_logs(args.retain) if args.retain else None
        out = aggregate_tofu_run(load_run_logs(args.run, args.model), retain, tr_variant=args.truth_ratio)
    except (OSError, ValueError, KeyError) as e:  # a wrong path or file: one line, no traceback
        raise SystemExit(f"error: {e}")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
