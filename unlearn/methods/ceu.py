"""CE-U (cross entropy unlearning), Yang, "CE-U: cross entropy unlearning" (2025, arXiv:2503.01224):
cross-entropy to the model's own next-token distribution with the true token removed:

    q_t(v) = softmax(sg(z_t) with z_t[y_t] := -inf)(v)   (= p_t(v) / (1 - p_t(y_t)) for v != y_t, 0 at y_t)
    L_CEU = (1/N) sum_{scored tokens t} -sum_v q_t(v) log p_t(v)
    minimize c_F L_CEU + c_R L_R          (retain_weight c_R = 0, the default: CE-U alone)

z_t are the logits at the position predicting y_t, p_t = softmax(z_t), sg a stop-gradient. The
gradient in z_t is p_t - q_t: it lowers the true token's logit with a step bounded by 1, unlike
gradient ascent's, which vanishes at high confidence and explodes at low.

The paper's footnote trick (Training Settings; open-unlearning ``ignore_first_n_answer_tokens``,
src/trainer/unlearn/ceu.py) leaves the first ``ignore_first_n_answer_tokens`` scored tokens of each
sequence out. N is the micro-batch's remaining scored-token count: a token mean, as open-unlearning's
``F.cross_entropy`` over the batch's valid positions. Unlike WGA's (:mod:`unlearn.methods.wga`) it is
not the effective batch's: the skipped tokens make N another count than the LM loss's normalizer, so
with accumulation the micro-batch means are weighted by their sequence share (open-unlearning's
accumulation too); ``ignore_first_n_answer_tokens: 0`` has the same count, but keeps this rule.
Open-unlearning's CEU trainer has no retain term; ``retain_weight`` > 0 adds the retain NLL.
"""
import torch
import torch.nn.functional as F

from unlearn.methods.base import RetainRegularized, register_method


def ceu_loss(logits: torch.Tensor, labels: torch.Tensor, skip_first: int = 0) -> torch.Tensor:
    """L_CEU of a batch of logits (B, T, V) and labels (B, T; -100 not scored), the first
    ``skip_first`` scored labels of each row left out."""
    scored = labels != -100
    labels = labels.masked_fill(scored & (scored.cumsum(-1) <= skip_first), -100)
    z, y = logits[:, :-1].float(), labels[:, 1:]
    mask = y != -100
    z, y = z[mask], y[mask]  # (N, V), (N,)
    target = F.softmax(z.detach().scatter(-1, y[:, None], float("-inf")), -1)
    ce = -(target * F.log_softmax(z, -1)).sum(-1)  # q = 0 at the true token, where log p is finite
    return ce.sum() / max(ce.numel(), 1)


@register_method("ceu", forget_task=True)
class CEU(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__({"retain_weight": 0.0, **cfg})  # CE-U alone unless asked
        self.skip_first = int(cfg.get("ignore_first_n_answer_tokens", 1))
        if self.skip_first < 0:
            raise ValueError(f"ceu needs ignore_first_n_answer_tokens >= 0, got {self.skip_first}")

    def task_loss(self, task, model, batch):
        if task != "forget":
            return super().task_loss(task, model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return ceu_loss(logits, batch["labels"], self.skip_first)
