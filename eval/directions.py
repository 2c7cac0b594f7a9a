"""Each metric's better direction and how an axis names it (shared by tables and figures)."""
from __future__ import annotations

# metric -> better direction: "max", "min" or "zero" (closest to 0 is best, e.g. PrivLeak)
DIRECTION = {
    "forget_quality": "max", "model_utility": "max", "forget_truth_ratio": "max", "forget_rouge": "min",
    "forget_prob": "min", "retain_prob": "max", "retain_rouge": "max", "retain_truth_ratio": "max",
    "forget_exact_memorization": "min", "forget_extraction_strength": "min",
    "verbmem_f": "min", "knowmem_f": "min", "knowmem_r": "max", "privleak": "zero",
    "forget_acc": "min", "general_acc": "max",  # WMDP: forget_acc's floor is chance, 0.25
    "loss_forget": "max", "loss_retain": "min",  # MUSE's privleak texts, WMDP's corpora: mean token NLL
}
ARROW = {"max": "↑", "min": "↓", "zero": "→0"}

# axis names as a reader writes them (an arrow says which way is better)
AXIS_NAMES = {"model_utility": "model utility", "model_utility_no_rouge": "model utility (likelihoods only)",
              "forget_quality": "forget quality", "forget_prob": "forget probability", "forget_rouge": "forget ROUGE-L",
              "forget_truth_ratio": "forget truth ratio", "knowmem_r": "KnowMem on D_r", "knowmem_f": "KnowMem on D_f",
              "verbmem_f": "VerbMem on D_f", "privleak": "PrivLeak", "forget_acc": "WMDP accuracy",
              "general_acc": "MMLU accuracy"}


def axis_label(metric: str, log: bool = False) -> str:
    """'model utility ↑', 'forget quality ↑ (log scale)'."""
    name = AXIS_NAMES.get(metric, metric.replace("_", " "))
    direction = DIRECTION.get(metric, "max" if metric.startswith("model_utility") else None)
    return name + (f" {ARROW[direction]}" if direction else "") + (" (log scale)" if log else "")
