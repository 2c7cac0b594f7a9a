"""Local lm-eval tasks: a question file in WMDP's / MMLU's format as a ``multiple_choice`` task
config, written as a task YAML where a folder of them (``include_path``) is wanted; and the
task names a config asks for, checked before any work.

A question file holds JSON lines (or one JSON array) of ``{"question": str, "choices": [str, ...],
"answer": int}`` -- WMDP's fields; MMLU's add ``subject``. Two prompt styles:

* ``letter``: WMDP's and MMLU's harness prompt (``lm_eval/tasks/wmdp/_default_template_yaml``,
  ``lm_eval/tasks/mmlu/default/_default_template_yaml``): the question, the four options as
  ``A. ...`` to ``D. ...``, ``Answer:``; the continuations are `` A`` .. `` D``; metric ``acc``.
* ``cloze``: MMLU's continuation variant (``lm_eval/tasks/mmlu/continuation``): ``Question: ...
  \\nAnswer:`` continued by each option's own text; metrics ``acc`` and ``acc_norm`` (the
  log-likelihood per character). A model too small to have learned the letter format still ranks
  answers this way.
"""
from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from eval.lm_eval.output import library_output

STYLES = ("letter", "cloze")
LETTERS = ("A", "B", "C", "D")
# the harness's own Jinja templates, verbatim (doc fields: question, choices, answer)
PROMPTS = {
    "letter": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
    "cloze": "Question: {{question.strip()}}\nAnswer:",
}
METRICS = {"letter": ("acc",), "cloze": ("acc", "acc_norm")}
# MMLU's per-subject description (tasks/mmlu/_generate_configs.py), rendered per item from its subject;
# WMDP's names its domain in plain text ("... about biology.\n\n")
MMLU_DESCRIPTION = "The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\n\n"


def read_questions(path: str | Path, style: str = "cloze") -> list[dict[str, Any]]:
    """The items of a question file, each checked: a ValueError names the file, the item and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"question file {path} does not exist")
    text = path.read_text()
    try:
        items = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"question file {path}: not JSON lines nor a JSON array ({e})") from None
    if not items:
        raise ValueError(f"question file {path} holds no questions")
    for i, item in enumerate(items):
        problem = _item_problem(item, style)
        if problem:
            raise ValueError(f"question file {path}, item {i}: {problem}")
    return items


def _item_problem(item: Any, style: str) -> str | None:
    if not isinstance(item, dict):
        return f"not an object: {item!r}"
    missing = [k for k in ("question", "choices", "answer") if k not in item]
    if missing:
        return f"no {', '.join(missing)} (WMDP's fields: question, choices, answer)"
    choices, answer = item["choices"], item["answer"]
    if not isinstance(item["question"], str):
        return "question is not a string"
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        return f"choices must be a list of at least 2 strings, got {choices!r}"
    if style == "letter" and len(choices) != len(LETTERS):
        return f"the letter style has {len(LETTERS)} options (A-D), this item {len(choices)}"
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        return f"answer must be an index into its {len(choices)} choices, got {answer!r}"
    return None


def local_task(name: str, data_file: str | Path, style: str = "letter", *, description: str | None = None,
               fewshot_file: str | Path | None = None) -> dict[str, Any]:
    """An lm-eval ``multiple_choice`` task config over a local question file (checked first).

    ``description``: text put before every prompt (a Jinja template over the item's fields, e.g.
    :data:`MMLU_DESCRIPTION`); ``fewshot_file``: a question file the few-shot examples come from, in
    order, as MMLU's ``dev`` split (without one lm-eval draws them from the evaluated items
    themselves, never the item being asked). Paths are made absolute: lm-eval reads them from
    wherever the run's working directory is.
    """
    if style not in STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(STYLES)}")
    files = {"test": data_file, **({"dev": fewshot_file} if fewshot_file is not None else {})}
    for f in files.values():
        read_questions(f, style)
    task: dict[str, Any] = {
        "task": name,
        # datasets' packaged json builder: a local file, no Hub access
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {split: str(Path(f).absolute()) for split, f in files.items()}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": PROMPTS[style],
        # field names, not "{{choices}}": a rendered list is parsed back and breaks on quotes in an option
        "doc_to_choice": list(LETTERS) if style == "letter" else "choices",
        "doc_to_target": "answer",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS[style]],
        "metadata": {"version": 1},
    }
    if description:
        task["description"] = description
    if fewshot_file is not None:
        task.update(fewshot_split="dev", fewshot_config={"sampler": "first_n"})
    return task


def write_task(task: dict[str, Any], folder: str | Path) -> Path:
    """``task`` as ``<folder>/<name>.yaml``, a file lm-eval's ``include_path`` finds."""
    import yaml

    path = Path(folder) / f"{task['task']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(task, sort_keys=False, allow_unicode=True))
    return path


def data_files(include_path: str | Path, names: Sequence[str]) -> list[Path]:
    """The local files the task YAMLs of ``names`` in ``include_path`` read (``dataset_kwargs.data_files``),
    for a cache key. lm-eval's own tags (``!function``) read as nothing; a YAML's ``include`` is not
    followed (its template's files are not seen)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    wanted, out = set(names), set()
    for path in sorted(Path(include_path).rglob("*.yaml")):
        try:
            cfg = yaml.load(path.read_text(), Loader=Loader)
        except yaml.YAMLError:
            continue  # not a task file lm-eval reads either
        if not isinstance(cfg, dict) or cfg.get("task") not in wanted:
            continue
        files = (cfg.get("dataset_kwargs") or {}).get("data_files") or {}
        for f in files.values() if isinstance(files, dict) else [files]:
            for one in f if isinstance(f, list) else [f]:
                if isinstance(one, str) and Path(one).is_file():
                    out.add(Path(one))
    return sorted(out)


def local_names(include_path: str | Path | None) -> list[str]:
    """The task, group and tag names lm-eval finds in ``include_path``."""
    return [] if include_path is None else list(_index(str(include_path)))


def builtin_names() -> list[str]:
    """lm-eval's own task, group and tag names (thousands of YAML files: indexed in seconds)."""
    return list(builtin_index())


@functools.lru_cache(maxsize=1)
def builtin_index() -> Mapping[str, Any]:
    """lm-eval's index of its own tasks, once per process."""
    return _index(None)


def _index(include_path: str | None) -> Mapping[str, Any]:
    """name -> lm-eval's index entry (its kind, its YAML's config, its tags) of the tasks in
    ``include_path`` (None: lm-eval's own); an lm-eval without the index (``task_index``): name -> None."""
    from lm_eval.tasks import TaskManager

    with library_output():
        manager = TaskManager() if include_path is None else TaskManager(include_path=include_path,
                                                                         include_defaults=False)
        index = getattr(manager, "task_index", None)
        return dict(index) if index is not None else dict.fromkeys(manager.all_tasks)


def check_tasks(names: Sequence[Any], include_path: str | Path | None, key: str = "eval.lm_eval.tasks") -> None:
    """Every name is a task of ``include_path`` or one of lm-eval's; else one line naming what is
    available (``key``: where the config gives the names; ``include_path`` beside it, under the same node).
    lm-eval's own tasks are indexed only for a name ``include_path`` lacks."""
    path_key = f"{key.rpartition('.')[0]}.include_path"
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(f"{key} must be task names, got {bad[0]!r}")
    if include_path is not None and not Path(include_path).is_dir():
        raise ValueError(f"{path_key}={include_path} is not a folder (of lm-eval task YAMLs)")
    local = set(local_names(include_path))
    rest = [n for n in names if n not in local]
    if not rest:
        return
    known = set(builtin_names())
    unknown = [n for n in rest if n not in known]
    if unknown:
        raise ValueError(_unknown_line(unknown[0], include_path, sorted(local), known, path_key))


def hub_datasets(names: Sequence[str], include_path: str | Path | None = None) -> list[tuple[str, str]]:
    """(task, Hub dataset id) of each data set lm-eval would fetch from the Hub to run ``names``
    (a group's or tag's tasks included; local files and packaged builders such as ``json`` left out),
    read from the task index without loading any data: what must be cached to run offline."""
    local = _index(str(include_path)) if include_path is not None else {}
    found: dict[str, str] = {}
    for name in names:
        for path in _dataset_paths(local if name in local else builtin_index(), name, set()):
            if _hub_id(path):
                found.setdefault(path, name)
    return [(task, path) for path, task in found.items()]


def _dataset_paths(index: Mapping[str, Any], name: str, seen: set[str]) -> Iterator[str]:
    entry = index.get(name)
    if entry is None or name in seen:
        return
    seen.add(name)
    cfg, kind = entry.cfg or {}, entry.kind.name
    if kind == "TAG":
        members = [n for n, e in index.items() if e is not None and name in (e.tags or ())]
    elif kind == "GROUP":
        task = cfg.get("task")
        members = [task] if isinstance(task, (str, dict)) else list(task or [])
    else:
        members = []
        if isinstance(cfg.get("dataset_path"), str):
            yield cfg["dataset_path"]
    for member in members:
        if isinstance(member, dict):  # a group's inline task config
            if isinstance(member.get("dataset_path"), str):
                yield member["dataset_path"]
            elif isinstance(member.get("task"), str):
                yield from _dataset_paths(index, member["task"], seen)
        elif isinstance(member, str):
            yield from _dataset_paths(index, member, seen)


def _hub_id(path: str) -> bool:
    """Whether a task's ``dataset_path`` names a Hub repository (not a local folder or file, not one of
    datasets' packaged builders)."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return path not in _PACKAGED_DATASETS_MODULES and not Path(path).expanduser().exists()


def _unknown_line(name: str, include_path, local: list[str], builtin: Iterable[str], path_key: str) -> str:
    close = difflib.get_close_matches(name, local + sorted(builtin), n=1, cutoff=0.75)
    where = (f"tasks in {path_key}={include_path}: {', '.join(local) or '(none)'}"
             if include_path is not None else f"no {path_key} (a folder of task YAMLs) given")
    return (f"unknown lm-eval task {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "") +
            f"; {where}; lm-eval's own tasks: lm-eval ls tasks")
