"""SimNPO, Fan et al., "Simplicity prevails: rethinking negative preference optimization for LLM
unlearning" (2024): NPO without the reference model, length-normalized, with a margin delta:

    L_SimNPO = -(2/beta) mean_i log sigmoid(-(beta/|y_i|) log pi_theta(y_i|x_i) - delta)
    minimize c_F L_SimNPO + c_R L_R

|y| is the number of scored (answer) tokens. The paper's margin gamma is ``delta`` here; the
reference code (OPTML-Group/Unlearn-Simple, open-unlearning) writes sigmoid(beta (nll/|y| - d)),
i.e. its d is delta / beta. Defaults are open-unlearning's TOFU ones (beta 4.5, delta 0,
c_F = 0.125, c_R = 1).
"""
from unlearn.losses import preference_loss, sequence_logprob
from unlearn.methods.base import RetainRegularized, positive_beta, register_method


@register_method("simnpo", forget_task=True)
class SimNPO(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.beta, self.delta = positive_beta(cfg, "simnpo", 4.5), float(cfg.get("delta", 0.0))

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        logp, n_tokens = sequence_logprob(model, batch)
        return preference_loss(-self.beta * logp / n_tokens - self.delta, self.beta)
