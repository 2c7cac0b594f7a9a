"""``eval.compat``: whose definitions the numbers follow.

The default is the benchmark's own reference code (``tofu``: TOFU's ``evaluate_util.py`` +
``aggregate_eval_stat.py``; ``muse``: MUSE's ``eval.py`` / ``metrics/``). ``open_unlearning``
gives the numbers open-unlearning's evaluator reports for the same model and data
(``locuslab/open-unlearning``; README "open-unlearning compatibility" lists every difference).

The mode is one switch. :func:`apply_compat` sets the eval keys that already name one of the two
rules (``ds_size``, the generation settings, ``rouge``, the Min-k variant, ...), so the record's
config shows exactly what ran; the rules with no key of their own read :func:`is_ou` (the prompt
mask, EOS after truncation, scoring length, the ``+ 1e-10`` guards, ground truths decoded from
tokens, the AUC orientation and PrivLeak's fallback reference).
"""
from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf


OPEN_UNLEARNING = "open_unlearning"
#: eval.compat values per benchmark: its reference code's rules (the default) or open-unlearning's
#  (WMDP has its own convention only, so far: open-unlearning evaluates it with lm-evaluation-harness)
COMPAT = {"tofu": ("tofu", OPEN_UNLEARNING), "muse": ("muse", OPEN_UNLEARNING), "wmdp": ("wmdp",)}

OU_TOFU_MAX_LENGTH = 512    # configs/data/datasets/TOFU_QA_*.yaml max_length
OU_KNOWMEM_MAX_LENGTH = 512  # configs/data/datasets/MUSE_*_knowmem.yaml max_length (the prompt is cut to it)
OU_MUSE_MAX_LENGTH = 2048   # MUSE_MIA.yaml / MUSE_forget_verbmem.yaml max_length (tokens after the prefix)
OU_PRIVLEAK_REF = 0.5       # configs/eval/{tofu,muse}_metrics/privleak.yaml ref_value, without retain logs
#: open-unlearning's guard in every ratio (``memorization.py``: ``+ 1e-10``); it moves a number only
#: once a probability is near 1e-10, i.e. after strong unlearning.
OU_EPS = 1e-10

#: key (dotted, inside eval) -> open-unlearning's value, per benchmark
OU_SETTINGS: dict[str, dict[str, Any]] = {
    "tofu": {
        "ds_size": None,                      # every item (TOFU_QA_*.yaml have no cap; TOFU: 300)
        "truth_ratio": OPEN_UNLEARNING,       # geometric R with its 1e-10 guards
        "generation.mode": "new_tokens",      # configs/generation/default.yaml max_new_tokens
        "generation.max_new_tokens": 200,
        "generation.prompt_answer_tag": True,  # the prompt ends with the assistant / answer tag
        "mia.k": 0.4,                         # mia_min_k.yaml
        "mia.min_k_variant": "ou",            # mia/min_k.py: the last scored token (EOS) dropped
    },
    "muse": {
        "rouge": "ou",                        # use_stemmer=True; the whole ground truth
        "mia.k": 0.4,
        "mia.min_k_variant": "ou",
        "mia.max_length": OU_MUSE_MAX_LENGTH + 1,  # BOS + 2048 text tokens
        "privleak_attack": "min_k",           # privleak.yaml pre_compute mia_min_k
        "privleak_reference": "retrain",      # the retain model's logs; else ref_value 0.5
    },
}


def check_compat(benchmark: str, eval_cfg: Mapping[str, Any]) -> str:
    value = str(eval_cfg.get("compat", COMPAT[benchmark][0]))
    if value in COMPAT and value != benchmark:  # the other benchmark's eval group
        raise ValueError(f"a {benchmark} dataset needs {benchmark}'s evaluation (eval={benchmark}); the eval group "
                         f"given is {value}'s")
    if value not in COMPAT[benchmark]:
        raise ValueError(f"unknown eval.compat {value!r} for {benchmark}; valid: {', '.join(COMPAT[benchmark])}")
    return value


def is_ou(eval_cfg: Mapping[str, Any]) -> bool:
    return str(eval_cfg.get("compat", "")) == OPEN_UNLEARNING


def apply_compat(cfg: DictConfig) -> DictConfig:
    """The run config with ``eval.compat``'s settings in place (a copy; unchanged for the default)."""
    bench = str(cfg.dataset.benchmark)
    if check_compat(bench, cfg.eval) != OPEN_UNLEARNING:
        return cfg
    out = cfg.copy()
    with _writable(out):
        for key, value in OU_SETTINGS[bench].items():
            OmegaConf.update(out.eval, key, value, merge=True, force_add=True)
    return out


class _writable:
    def __init__(self, cfg: DictConfig):
        self.cfg, self.struct = cfg, OmegaConf.is_struct(cfg)

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, self.struct)


def ou_ground_truth(tokenizer, full_ids, prompt_ids) -> str:
    """open-unlearning's ROUGE reference (``eval_text_similarity``): the decoded full sequence with
    the decoded prompt removed, stripped -- not the raw answer string."""
    return ou_ground_truths(tokenizer, [full_ids], [prompt_ids])[0]


def ou_ground_truths(tokenizer, full_ids, prompt_ids) -> list[str]:
    """:func:`ou_ground_truth` of each (full, prompt) pair of token id lists, decoded in two calls."""
    kw = dict(skip_special_tokens=True, clean_up_tokenization_spaces=True)
    fulls = tokenizer.batch_decode([list(f) for f in full_ids], **kw)
    prompts = tokenizer.batch_decode([list(p) for p in prompt_ids], **kw)
    return [f.replace(p, "").strip() for f, p in zip(fulls, prompts, strict=True)]


def ou_scored_text(tokenizer, feature) -> str:
    """What open-unlearning's zlib attack compresses (``extract_target_texts_from_processed_data``):
    a feature's scored tokens decoded, special tokens skipped."""
    return ou_scored_texts(tokenizer, [feature])[0]


def ou_scored_texts(tokenizer, features) -> list[str]:
    """:func:`ou_scored_text` of each feature, decoded in one call."""
    return tokenizer.batch_decode([[t for t in f["labels"] if t != -100] for f in features], skip_special_tokens=True)
