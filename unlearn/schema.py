"""The run config's schema, checked before any work: keys, types and ranges.

* **Keys.** Hydra already rejects ``method.lrr=1e-3`` (no such key) and suggests ``+method.lrr``;
  a ``+key=value`` (or ``++``) outside a config group adds a key nothing reads, so it is rejected
  here with the nearest valid key -- unless its parent is a free-form value (``model.lora``, a
  dict the user writes, or any key whose default is null).
* **Types.** A command-line value must have its key's declared type, the type of the key's value
  in the config files the run composes (``seed=1.5`` or ``seed=abc`` against ``seed: 0``): ints are
  ints, floats take ints, booleans are booleans, lists are lists; strings take numbers (a revision
  may be all digits).
* **Ranges.** :data:`RANGES` holds the numbers that must be within bounds (``eval.ds_size >= 1``
  or null, ``scheduler.lazy >= 1``, ...); it is checked on every run, also outside Hydra.

Every error is a :class:`ConfigError`: one line naming the key, what it got and what is valid.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from unlearn.config import CONFIG_DIR

# top-level config groups (conf/<group>/); sweeps/ is one too (the repository root is on the search path)
GROUPS = frozenset({p.name for p in CONFIG_DIR.iterdir() if p.is_dir()} | {"sweeps"})
FLOAT_OK = frozenset({"scheduler.warmup_epochs", "method.dual_warmup_epochs"})  # declared as ints in their files, take fractions


class ConfigError(ValueError):
    """A config value or key that cannot run: the message is the one line the user sees."""


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# key -> (test, what is valid); a key absent from the config (another scheduler, benchmark) is skipped
RANGES: dict[str, tuple[Any, str]] = {
    "seed": (_int, "an integer"),
    "overwrite": (lambda v: isinstance(v, bool), "true or false"),
    "threads": (lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    "resume_every": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "callbacks": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                  "a list of callback names (registered, or package.module:Name)"),
    "method.lr": (lambda v: _num(v) and 0 < v < math.inf, "a positive number"),
    "method.epochs": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "method.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "method.grad_accum_steps": (lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    "method.effective_batch": (lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    "method.max_steps": (lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1"),
    "method.weight_decay": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "scheduler.warmup_ratio": (lambda v: _num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "scheduler.warmup_epochs": (lambda v: _num(v) and v >= 0, "a number >= 0"),
    "scheduler.lazy": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "scheduler.calibrate": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "eval.ds_size": (lambda v: v is None or (_int(v) and v >= 1), "null (every item) or an integer >= 1"),
    "eval.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "eval.trajectory_every": (lambda v: _int(v) and v >= 0, "an integer >= 0 (0: off)"),
    "eval.generation.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "eval.generation.max_new_tokens": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "eval.generation.max_length": (lambda v: _int(v) and v >= 2, "an integer >= 2"),
    "model.seed": (_int, "an integer"),
    # eval/mia/attacks.py MiaSettings checks these too, but only when the evaluation starts (after unlearning)
    "eval.mia.extra_attacks": (lambda v: isinstance(v, list) and set(v) <= set(_mia().EXTRA_ATTACKS),
                               "a list of gradnorm, reference"),
    "eval.mia.gradnorm_p": (lambda v: _num(v) and v in _mia().GRADNORM_P, "1, 2 or inf"),
    "eval.mia.gradnorm_batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "eval.mia.gradnorm_per_sample": (lambda v: v in _mia().PER_SAMPLE, "vmap or loop"),
    "eval.questions": (lambda v: v in ("harness", "scorer"), "harness or scorer (eval/wmdp/evaluate.py SCORERS)"),
    "eval.tasks.forget": (lambda v: v is None or (isinstance(v, str) and bool(v)), "null or an lm-eval task name"),
    "eval.tasks.general": (lambda v: v is None or (isinstance(v, str) and bool(v)), "null or an lm-eval task name"),
    "eval.tasks.include_path": (lambda v: v is None or (isinstance(v, str) and bool(v)), "null or a folder"),
    # eval/lm_eval/tasks.py checks the task names themselves (unlearn/validation.py)
    "eval.lm_eval.tasks": (lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
                           "a list of lm-eval task names"),
    "eval.lm_eval.include_path": (lambda v: v is None or (isinstance(v, str) and bool(v)),
                                  "null or a folder of lm-eval task YAMLs"),
    "eval.lm_eval.batch_size": (lambda v: _int(v) and v >= 1, "an integer >= 1"),
    "eval.lm_eval.num_fewshot": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "eval.lm_eval.limit": (lambda v: v is None or (_int(v) and v >= 1) or (isinstance(v, float) and 0 < v < 1),
                           "null (every item), an integer >= 1 or a fraction in (0, 1)"),
}


def _mia():
    import eval.mia.attacks  # the attack names' one home; imported when checked (eval imports unlearn)

    return eval.mia.attacks


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    node = cfg
    for part in key.split("."):
        if not isinstance(node, (Mapping, DictConfig)) or part not in node:
            return default
        node = node[part]
    return node


_ABSENT = object()


def check_ranges(cfg: Mapping[str, Any] | DictConfig) -> None:
    """Every :data:`RANGES` key the config holds is within its bounds."""
    for key, (ok, valid) in RANGES.items():
        value = _get(cfg, key, _ABSENT)
        if value is _ABSENT:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not ok(value):
            raise ConfigError(f"{key} must be {valid}, got {value!r}")


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config (values unresolved: a missing ``???`` is a key too)."""
    out = []
    for k in cfg.keys():
        node = cfg._get_node(k)
        path = f"{prefix}{k}"
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            out.append(path)
            out += leaf_keys(node, path + ".")
        else:
            out.append(path)
    return out


def nearest(key: str, valid: Iterable[str]) -> str:
    """'; did you mean X?' for the closest valid key under the same parent, else the parent's
    valid keys (or the closest key anywhere)."""
    valid = list(valid)
    parent, _, name = key.rpartition(".")
    siblings = {v.rpartition(".")[2]: v for v in valid if v.rpartition(".")[0] == parent}
    match = difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.6)
    if match:
        return f"; did you mean {siblings[match[0]]}?"
    depth = key.count(".")  # a mistyped parent (methd.lr): the closest key of the same depth
    others = [v for v in valid if v.count(".") == depth and v.rpartition(".")[0] != parent]
    match = difflib.get_close_matches(key, others, n=1, cutoff=0.8)
    if match:
        return f"; did you mean {match[0]}?"
    if siblings:
        names = sorted(siblings)
        return f"; valid keys under {parent or 'the top level'}: {', '.join(names[:20])}" + (", ..." if len(names) > 20 else "")
    return ""


def _declared(base: DictConfig, key: str) -> Any:
    """The key's value in the composed config files, or _ABSENT (resolution failures: _ABSENT)."""
    try:
        return OmegaConf.select(base, key, default=_ABSENT, throw_on_missing=False, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001 -- an interpolation that needs the command line
        return _ABSENT


def _type_ok(declared: Any, value: Any, key: str) -> tuple[bool, str]:
    """Whether ``value`` has the type of ``declared`` (null, missing or unknown declarations take anything)."""
    if declared is None or declared is _ABSENT or declared == "???" or value is None:
        return True, ""
    if isinstance(declared, bool):
        return isinstance(value, bool), "true or false"
    if _int(declared):
        return (_int(value) or (key in FLOAT_OK and _num(value))), "an integer"
    if isinstance(declared, float):
        return _num(value), "a number"
    if isinstance(declared, (ListConfig, list)):
        return isinstance(value, (ListConfig, list)), "a list"
    if isinstance(declared, (DictConfig, dict)):
        return isinstance(value, (DictConfig, dict)), "a mapping"
    if isinstance(declared, str):
        return isinstance(value, (str, int, float)) and not isinstance(value, bool), "a string"
    return True, ""


def _is_group(key: str, package: str | None) -> bool:
    """A config group choice (method=ga, +recipe=tofu, hydra/launcher=..., model@x=...)."""
    return bool(package) or "/" in key or key in GROUPS


def check_overrides(cfg: DictConfig, overrides: Iterable[str], base: DictConfig) -> None:
    """The command line's overrides against ``base``, the config the same group choices compose
    without them: no added key outside a free-form value, every changed value of its declared type."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    valid = leaf_keys(base)
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if _is_group(key, o.package) or o.type == OverrideType.DEL:
            continue
        if o.type in (OverrideType.ADD, OverrideType.FORCE_ADD) and key not in valid:
            if "." in key and _free_parent(base, key.rsplit(".", 1)[0]):
                continue  # inside a free-form value (its default is null: a dict the user writes)
            raise ConfigError(f"unknown config key {key} (from {o.input_line}){nearest(key, valid)}")
        declared, value = _declared(base, key), _get(cfg, key, _ABSENT)
        if value is _ABSENT:
            continue
        ok, want = _type_ok(declared, value, key)
        if not ok:
            raise ConfigError(f"{key} must be {want} (as in its config file: {key}: {_plain(declared)}), "
                              f"got {value!r} (from {o.input_line})")


def _free_parent(base: DictConfig, parent: str) -> bool:
    """Whether a parent key was free-form in the files: null there (a dict the user writes)."""
    node = parent
    while node:
        if _declared(base, node) is None:
            return True
        node = node.rsplit(".", 1)[0] if "." in node else ""
    return False


def _plain(v: Any) -> Any:
    """A value as the user would write it in YAML."""
    if isinstance(v, (DictConfig, ListConfig)):
        return OmegaConf.to_container(v, resolve=True)
    return {True: "true", False: "false"}.get(v, v) if isinstance(v, bool) else v


def base_config(choices: Mapping[str, Any], compose) -> DictConfig:
    """The config the group ``choices`` compose with no other override (``compose``: a function
    of an override list, e.g. :func:`unlearn.config.compose_config`)."""
    picks = [f"{g}={c}" for g, c in choices.items() if c is not None and "/" not in g and g in GROUPS
             and g not in ("hydra",)]
    return compose(picks)
