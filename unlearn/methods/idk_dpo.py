"""IDK-DPO: direct preference optimization (Rafailov et al., NeurIPS 2023) with the IDK answer
preferred and the true forget answer rejected, against the frozen target, plus the retain term
(the "IDK preference optimization" baseline of TOFU; loss as open-unlearning's ``DPO``):

    L_DPO = -(2/beta) mean_i log sigmoid(beta [(log pi_theta(y_idk|x) - log pi_ref(y_idk|x))
                                              - (log pi_theta(y|x)     - log pi_ref(y|x))])
    minimize c_F L_DPO + c_R L_R

(the original DPO loss is beta/2 times L_DPO). IDK answers and the prompt x are as in ``idk`` (on
MUSE the rejected y is the chunk's continuation after its prefix, not the whole chunk); the
reference log-likelihoods of both answers of every forget row are computed once in ``setup``.
"""
from unlearn.losses import preference_loss, sequence_logprob
from unlearn.methods.base import (features_batch, load_reference, positive_beta, reference_logprobs,
                                  register_method)
from unlearn.methods.idk import IDK


@register_method("idk_dpo", forget_task=True)
class IDKDPO(IDK):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.beta = positive_beta(cfg, "idk_dpo", 0.1)

    def setup(self, ctx) -> None:
        super().setup(ctx)
        # the true answers after the same prompts (TOFU: exactly the forget features)
        self.true_features = [ctx.encode(r, None, self.prefix_tokens) for r in ctx.forget_rows]
        reference, bs = load_reference(ctx), int(self.cfg.get("ref_batch_size", 32))
        self.ref_preferred = reference_logprobs(reference, self.idk_features, ctx, bs)
        self.ref_rejected = reference_logprobs(reference, self.true_features, ctx, bs)

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        i = batch["index"]
        preferred, _ = sequence_logprob(model, self.idk_batch(batch))
        rejected, _ = sequence_logprob(model, features_batch(self.true_features, i, self.pad_id))
        margin = (preferred - self.ref_preferred[i]) - (rejected - self.ref_rejected[i])
        return preference_loss(self.beta * margin, self.beta)
