"""UNDIAL, Dong et al., "UNDIAL: self-distillation with adjusted logits for robust unlearning in large
language models" (arXiv:2402.10052, 2024; NAACL 2025), as open-unlearning runs it (src/trainer/
unlearn/undial.py, ``compute_undial_loss`` in src/trainer/utils.py): self-distillation towards the
frozen target's next-token distribution with the true next token's logit lowered by beta,

    q_t = softmax(z^ref(x_<t) - beta * onehot(y_t))
    L_UNDIAL = mean_t H(q_t, p_theta(. | x_<t)) = mean_t -sum_v q_t(v) log p_theta(v | x_<t)
    minimize c_F L_UNDIAL + c_R L_R          (retain_weight c_R = 0: UNDIAL alone, the paper's)

The cross-entropy is open-unlearning's; KL(q_t || p_theta) differs from it by the entropy of the fixed
q_t, so both have the same gradient. ``positions: scored`` averages over the scored (answer)
positions, the tokens y_t to forget (the paper's forget documents are scored throughout);
``all`` over every position of the padded batch, as open-unlearning's code does (where there is no
scored token there is nothing to lower: q_t is the target's distribution; open-unlearning's -100
label indexes the vocabulary from its end and lowers token V-100 there instead, not reproduced).

q_t needs the target's logits at every position and vocabulary entry: far too large to precompute
for the forget set, so each forget batch takes one reference forward, without gradients.
"""
import torch
import torch.nn.functional as F

from unlearn.losses import KL_POSITIONS, scored_mean
from unlearn.methods.base import RetainRegularized, load_reference, positive_beta, register_method


def adjusted_target(ref_logits: torch.Tensor, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """q = softmax(z - beta onehot(y)) of the shifted logits (B, T-1, V); unscored positions keep z."""
    target = labels[:, 1:].unsqueeze(-1)
    z = ref_logits[:, :-1].float().clone()
    z.scatter_add_(-1, target.clamp(min=0), -beta * (target != -100).to(z.dtype))
    return F.softmax(z, dim=-1)


def undial_loss(logits, ref_logits, labels, beta: float, positions: str = "scored", batch=None) -> torch.Tensor:
    """mean_t H(q_t, p_theta), over the scored positions or all of them (see the module docstring);
    ``batch``: the scored mean is the effective batch's token mean (:func:`unlearn.losses.scored_mean`)."""
    q = adjusted_target(ref_logits, labels, beta)
    ce = -(q * F.log_softmax(logits[:, :-1].float(), dim=-1)).sum(-1)  # (B, T-1)
    return scored_mean(ce, labels[:, 1:] != -100, batch) if positions == "scored" else ce.mean()


@register_method("undial", forget_task=True)
class UNDIAL(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.beta = positive_beta(cfg, "undial", 10.0)
        self.positions = str(cfg.get("positions", "scored"))
        if self.positions not in KL_POSITIONS:
            raise ValueError(f"undial: unknown positions {self.positions!r}; valid: {', '.join(KL_POSITIONS)}")

    def setup(self, ctx) -> None:
        self.reference = load_reference(ctx)

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            ref_logits = self.reference(**inputs).logits
        return undial_loss(model(**inputs).logits, ref_logits, batch["labels"], self.beta, self.positions, batch)

    @property
    def token_mean_tasks(self):
        return self.tasks if self.positions == "scored" else super().token_mean_tasks
