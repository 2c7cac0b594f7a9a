"""Representation misdirection for unlearning (RMU), Li et al., "The WMDP benchmark: measuring and
reducing malicious use with unlearning" (ICML 2024), as open-unlearning runs it
(src/trainer/unlearn/rmu.py, itself after the WMDP authors' rmu/unlearn.py):

    L_F = mean_{x in forget} mean_{t in x} || h_l(x)_t - c u ||^2
    L_R = mean_{x in retain} mean_{t in x} || h_l(x)_t - h_l^ref(x)_t ||^2
    minimize c_F L_F + c_R L_R        (c_R is the paper's alpha; retain_weight 0: L_F alone)

h_l is the output of decoder layer l (the residual stream after it), caught by a forward hook;
h_l^ref the frozen target's; u a unit vector with i.i.d. U[0, 1) entries, drawn once from its own
generator seeded by ``direction_seed`` (at the first forward, when the width is known: u depends on
(seed, width) only, so a resumed run draws the same u); c is ``steering_coeff``.

Only the parameters ``update_params`` names train: by default the MLP down-projection of layers
l-2, l-1, l (the paper; WMDP code ``param_ids=[6]``); ``all`` trains every parameter (open-unlearning's
configs/trainer/RMU.yaml, after G-effect). ``layer`` counts from 0; ``null`` (the default) takes the
paper's layer 7 of 32 at the same relative depth, round(7 n / 32) of a model of n layers: 7 of a
32-layer model (Llama-2-7B, Zephyr-7B), 1 of the embedded world's 4, 0 of debug=tiny's 2.

Options where the printed equation and the code differ:
- ``hidden_reduction``: ``mean`` over the hidden units (``F.mse_loss`` of the WMDP code, and
  open-unlearning's ``compute_activation_loss``: their c and alpha were tuned with it) or ``sum``,
  the paper's squared L2 norm (d times larger: the same minimizer, another loss scale).
- ``positions``: ``scored`` averages over the tokens with a label (open-unlearning: the answer on
  TOFU; every token of a raw-text chunk, the paper's documents); ``attended`` over every non-padding
  token, the question included.
- ``retain_loss``: ``embed_diff`` (L_R above), ``nll`` (the LM loss) or ``kl`` (KL to the target over
  all positions): open-unlearning's retain_loss_type EMBED_DIFF / NLL / KL.
"""
import re

import torch

from unlearn.losses import kl_to_reference
from unlearn.methods.base import RetainRegularized, load_reference, register_method

REFERENCE_LAYER, REFERENCE_DEPTH = 7, 32  # the WMDP paper's and open-unlearning's layer 7 of a 32-layer model
RETAIN_LOSSES, POSITIONS, REDUCTIONS = ("embed_diff", "nll", "kl"), ("scored", "attended"), ("mean", "sum")


def _choice(cfg, key, default, valid):
    value = str(cfg.get(key, default))
    if value not in valid:
        raise ValueError(f"rmu: unknown {key} {value!r}; valid: {', '.join(valid)}")
    return value


def decoder_layers(model: torch.nn.Module, name: str) -> torch.nn.ModuleList:
    """The model's list of decoder layers: the one ModuleList whose name ends in ``name``, wherever a
    wrapper put it (``model.layers``, DDP's ``module.model.layers``, PEFT's ``base_model.model.model.layers``)."""
    found = [m for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and n.split(".")[-1] == name]
    if len(found) != 1:
        raise ValueError(f"rmu: the model has {len(found)} module lists named {name!r}, expected one "
                         "(the decoder layers): set method.layers_module")
    return found[0]


def layer_output(model: torch.nn.Module, layer: torch.nn.Module, batch) -> torch.Tensor:
    """The (batch, length, width) output of ``layer`` in a forward of ``model`` on ``batch``.

    The forward returns that activation in place of the logits (a hook on the module a DDP wrapper
    holds, else on ``model``): DDP looks for the parameters without gradient by searching back from
    the forward's output (``find_unused_parameters``), and from the logits it would count the layers
    after l and the head as used, then wait forever for their gradients."""
    out = []
    root = getattr(model, "module", model)  # DDP's (and FSDP1's) wrapped module
    hooks = [layer.register_forward_hook(lambda m, i, o: out.append(o[0] if isinstance(o, tuple) else o)),
             root.register_forward_hook(lambda m, i, o: out[0])]
    try:
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for h in hooks:
            h.remove()


def activation_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Squared distance per token (mean or sum over the width), averaged over each sequence's masked
    tokens, then over the sequences (open-unlearning's ``compute_activation_loss``)."""
    sq = (h.float() - target.float()).square()
    per_token = sq.mean(-1) if reduction == "mean" else sq.sum(-1)
    m = mask.to(per_token.dtype)
    return ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).mean()  # no masked token (truncated): 0, not NaN


@register_method("rmu", forget_task=True)
class RMU(RetainRegularized):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        layer = cfg.get("layer")
        self.layer, self.update_layers = None if layer is None else int(layer), int(cfg.get("update_layers", 3))
        if (self.layer is not None and self.layer < 0) or self.update_layers < 1:
            raise ValueError(f"rmu needs layer >= 0 and update_layers >= 1, got {self.layer}, {self.update_layers}")
        self.layers_module = str(cfg.get("layers_module", "layers"))
        self.update_params = str(cfg.get("update_params", r"mlp\.down_proj\..*"))
        self.steering_coeff = float(cfg.get("steering_coeff", 2.0))
        self.seed = int(cfg.get("direction_seed", 0))
        self.retain_loss = _choice(cfg, "retain_loss", "embed_diff", RETAIN_LOSSES)
        self.positions = _choice(cfg, "positions", "scored", POSITIONS)
        self.reduction = _choice(cfg, "hidden_reduction", "mean", REDUCTIONS)
        self.u = None

    @property
    def lm_tasks(self):
        return ("retain",) if "retain" in self.tasks and self.retain_loss == "nll" else ()

    def layer_index(self, n_layers: int) -> int:
        """l for a model of ``n_layers`` decoder layers (a ValueError naming the valid range)."""
        if self.layer is None:
            return min(n_layers - 1, round(REFERENCE_LAYER * n_layers / REFERENCE_DEPTH))
        if self.layer >= n_layers:
            raise ValueError(f"rmu: method.layer={self.layer} is out of range for a model of {n_layers} "
                             f"decoder layers: valid 0..{n_layers - 1} (or null: 7 of 32 at the same depth)")
        return self.layer

    @property
    def unused_parameters(self) -> bool:
        # ``all``: no activation loss reaches the layers after l or the head (the default selection
        # lies in layers l-2..l, all upstream of h_l)
        return self.update_params == "all"

    def check_model(self, model_cfg) -> None:
        n = ((model_cfg or {}).get("arch") or {}).get("num_hidden_layers")
        if n is not None and (model_cfg or {}).get("source", "scratch") == "scratch":
            self.layer_index(int(n))  # a model built here: its depth is known before any work

    def layers(self, model):
        """The model's decoder layers and l among them."""
        layers = decoder_layers(model, self.layers_module)
        return layers, self.layer_index(len(layers))

    def prepare_model(self, model) -> None:
        layers, layer = self.layers(model)
        if self.update_params == "all":
            return
        chosen = {id(p) for i in range(max(0, layer - self.update_layers + 1), layer + 1)
                  for n, p in layers[i].named_parameters() if re.fullmatch(self.update_params, n)}
        for p in model.parameters():
            if id(p) not in chosen:
                p.requires_grad_(False)
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"rmu: no trainable parameter of layers ..{layer} matches "
                             f"update_params={self.update_params!r}")

    def setup(self, ctx) -> None:
        if "retain" in self.tasks and self.retain_loss != "nll":
            self.reference = load_reference(ctx)

    def direction(self, width: int) -> torch.Tensor:
        """c u, u drawn once (per width) from its own seeded generator."""
        if self.u is None or self.u.numel() != width:
            u = torch.rand(width, generator=torch.Generator().manual_seed(self.seed))
            self.u = u / u.norm()
        return self.steering_coeff * self.u

    def task_loss(self, task, model, batch):
        if task == "retain" and self.retain_loss == "nll":
            return super().task_loss(task, model, batch)
        if task == "retain" and self.retain_loss == "kl":
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            with torch.no_grad():
                ref_logits = self.reference(**inputs).logits
            return kl_to_reference(model(**inputs).logits, ref_logits, batch["labels"], "all")
        mask = batch["labels"] != -100 if self.positions == "scored" else batch["attention_mask"].bool()
        layers, layer = self.layers(model)
        h = layer_output(model, layers[layer], batch)
        if task == "forget":
            target = self.direction(h.size(-1)).to(h.device)
        else:
            with torch.no_grad():
                ref_layers, _ = self.layers(self.reference)
                target = layer_output(self.reference, ref_layers[layer], batch)
        return activation_mse(h, target, mask, self.reduction)
