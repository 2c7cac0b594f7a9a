"""Primal-dual unlearning (PDU), Entesari et al., "Constrained entropic unlearning: a primal-dual
framework for large language models" (2025, arXiv:2506.05314):

    min_theta L_LM(theta)  s.t.  L_R(theta) <= eps,   solved on the Lagrangian c_F L_LM + lambda (L_R - eps)
    L_LM = (1/N) sum_{scored positions t} (max_v z_t(v) - mean_v z_t(v))^2      (logit-margin flattening)
    lambda_{k+1} = max(0, lambda_k + dual_lr (L_R(theta_k) - eps))              (dual ascent, each step)

z_t are the logits at a position: L_LM = 0 exactly when they are all equal (the uniform next-token
distribution), without a softmax. Step k descends c_F L_LM + lambda_k L_R (lambda eps is a constant
in theta) -- ``weights()`` is {forget: c_F, retain: lambda_k} -- then ``after_step`` takes the step's
global L_R for the dual update, as open-unlearning's ``PDU.final_loss_value`` (src/trainer/unlearn/
pdu.py) updates lambda after the loss that used it. There it runs on each process's and micro-batch's
own retain loss; here once a step, on the effective batch's. The step row logs the lambda the step
used (``pdu/lambda``) and L_R - eps (``pdu/constraint``); lambda_{k+1} is the resumable state.

Warm-up (the paper's warm start): lambda stays at ``dual_init`` for the first ``dual_warmup_steps``
steps and until ``dual_warmup_epochs`` epochs have ended. The epochs are open-unlearning's count
(configs/trainer/PDU.yaml: 5, the class: 0): its callback enables the updates at the end of the
first epoch e >= dual_warmup_epochs (src/trainer/unlearn/pdu.py ``DualOptimizationCallback``), so a
step updates lambda once its epoch's index (0-based: the epochs ended before it) reaches that.

Positions: ``scored`` (default) flattens the distributions that predict the answer tokens, the
positions ``lm_loss`` scores (the paper's pi(.|x, y_<i)); ``labels`` those at the answer tokens
themselves (mask ``labels != -100`` without the shift), as open-unlearning's code does -- one position
later: the first answer token's prediction is left out, the one after the last taken in. N counts
them: with ``scored``, over the step's effective batch (as the LM loss; :mod:`unlearn.methods.wga`),
with ``labels`` in the micro-batch, as open-unlearning does.
"""
import torch

from unlearn.losses import lm_loss, scored_mean
from unlearn.methods.base import Method, nonnegative, register_method

MARGIN_POSITIONS = ("scored", "labels")


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, positions: str = "scored", batch=None) -> torch.Tensor:
    """L_LM: the mean over the chosen positions of (max_v z - mean_v z)^2 (see the module docstring);
    ``batch``: normalized as the effective batch's token mean (``scored`` only)."""
    if positions == "scored":
        z = logits[:, :-1].float()
        return scored_mean((z.max(-1).values - z.mean(-1)) ** 2, labels[:, 1:] != -100, batch)
    if positions == "labels":
        z = logits[labels != -100].float()  # (N, V)
        return ((z.max(-1).values - z.mean(-1)) ** 2).sum() / max(z.shape[0], 1)
    raise ValueError(f"unknown margin_positions {positions!r}; valid: {', '.join(MARGIN_POSITIONS)}")


@register_method("pdu")
class PDU(Method):
    tasks = ("forget", "retain")
    lm_tasks = ("retain",)  # the forget task is the margin loss

    @property
    def token_mean_tasks(self):
        return ("forget", "retain") if self.positions == "scored" else ("retain",)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.forget_weight = float(cfg.get("forget_weight", 1.0))
        self.lam = nonnegative(cfg, "dual_init", 1.0, "pdu")
        self.dual_lr = nonnegative(cfg, "dual_lr", 1.0, "pdu")
        self.warmup = int(cfg.get("dual_warmup_steps", 0))
        self.warmup_epochs = nonnegative(cfg, "dual_warmup_epochs", 0, "pdu")
        self.eps_relative = cfg.get("eps_relative")
        # eps_relative set: eps is fixed from the first step's L_R (at the target), in after_step
        self.eps = None if self.eps_relative is not None else float(cfg.get("eps", 0.3))
        self.positions = str(cfg.get("margin_positions", "scored"))
        if self.positions not in MARGIN_POSITIONS:
            raise ValueError(f"unknown margin_positions {self.positions!r}; valid: {', '.join(MARGIN_POSITIONS)}")
        self.steps = 0

    def task_loss(self, task, model, batch):
        if task != "forget":
            return lm_loss(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return margin_loss(logits, batch["labels"], self.positions, batch)

    def weights(self) -> dict[str, float]:
        return {"forget": self.forget_weight, "retain": self.lam}

    def after_step(self, losses, epoch=0):
        if self.eps is None:  # the paper's eps = (1 + alpha) L_R(target)
            self.eps = (1.0 + float(self.eps_relative)) * losses["retain"]
        used, constraint = self.lam, losses["retain"] - self.eps
        self.steps += 1
        if self.steps > self.warmup and epoch >= self.warmup_epochs:
            self.lam = max(0.0, self.lam + self.dual_lr * constraint)
        return {"pdu/lambda": used, "pdu/constraint": constraint, "pdu/eps": self.eps}

    def state_dict(self):
        return {"lambda": self.lam, "eps": self.eps, "steps": self.steps}

    def load_state_dict(self, state):
        if state:
            self.lam, self.eps, self.steps = float(state["lambda"]), state["eps"], int(state["steps"])
