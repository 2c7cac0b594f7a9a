"""Negative preference optimization (NPO), Zhang et al., "Negative preference optimization: from
catastrophic collapse to effective unlearning" (COLM 2024), with the retain term (NPO+RT):

    L_NPO = -(2/beta) mean_i log sigmoid(-beta (log pi_theta(y_i|x_i) - log pi_ref(y_i|x_i)))
    minimize c_F L_NPO + c_R L_R          (retain_weight c_R = 0: NPO alone)

log pi(y|x) sums over the answer tokens. The forget set is fixed, so log pi_ref of every forget
example is computed once in ``setup`` and gathered by ``batch["index"]``: no reference forward
during training (TOFU's and open-unlearning's code run one per step).
"""
from unlearn.losses import preference_loss, sequence_logprob
from unlearn.methods.base import (RetainRegularized, load_reference, positive_beta, reference_logprobs,
                                  register_method)


@register_method("npo", forget_task=True)
class NPO(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.beta = positive_beta(cfg, "npo", 0.1)

    def setup(self, ctx) -> None:
        reference = load_reference(ctx)  # used here only, then freed
        batch_size = int(self.cfg.get("ref_batch_size", 32))
        self.ref_logp = reference_logprobs(reference, ctx.forget_features, ctx, batch_size)

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        logp, _ = sequence_logprob(model, batch)
        return preference_loss(-self.beta * (logp - self.ref_logp[batch["index"]]), self.beta)
