"""KL-regularized gradient difference: minimize c_R KL(p_target || p_theta) on retain - c_F L_F.

The retain term is the KL divergence from the frozen target ("reference") to the current model,
of the next-token distributions on the retain batch, averaged over positions:

    KL_R = mean_positions sum_v p_ref(v | x_<t) (log p_ref(v | x_<t) - log p_theta(v | x_<t))

``kl``: TOFU's "KL" baseline (Maini et al., 2024, ``forget.py`` loss_type KL: gradient ascent on
the forget set + KL on the retain set, weights 1 and 1). ``gdiff_kl``: the same objective as
GDiff with the KL retain term, with GDiff's weights c_R, c_F. ``kl_positions: all`` averages over
every position of the padded batch as TOFU and open-unlearning do; ``scored`` only over the scored
(answer) positions (see ``unlearn.losses.kl_to_reference``).
"""
import torch

from unlearn.losses import KL_POSITIONS, kl_to_reference
from unlearn.methods.base import MethodContext, load_reference, register_method
from unlearn.methods.gdiff import GradDiff


@register_method("gdiff_kl")
@register_method("kl")
class GradDiffKL(GradDiff):
    lm_tasks = ("forget",)  # the retain task is the KL term, not L_R

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.positions = str(cfg.get("kl_positions", "all"))
        if self.positions not in KL_POSITIONS:
            raise ValueError(f"unknown kl_positions {self.positions!r}; valid: {', '.join(KL_POSITIONS)}")

    def setup(self, ctx: MethodContext) -> None:
        self.reference = load_reference(ctx)

    def task_loss(self, task, model, batch):
        if task != "retain":
            return super().task_loss(task, model, batch)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():  # the retain batch is random: one reference forward per step
            ref_logits = self.reference(**inputs).logits
        return kl_to_reference(model(**inputs).logits, ref_logits, batch["labels"], self.positions, batch)

    @property
    def token_mean_tasks(self):  # kl_positions: scored is a token mean of the effective batch
        return self.tasks if self.positions == "scored" else super().token_mean_tasks
