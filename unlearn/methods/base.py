"""The method interface: batches -> named task losses, and how they combine.

A method never runs the loop. The engine asks it for one loss closure per task, computes the
per-task gradients (or a single backward of the weighted sum, for scalarizations when no
per-task statistics are wanted) and asks it for the update direction ``d``; ``d`` is handed to
the optimizer as the gradient, i.e. the update is ``w <- w - lr * precond(d)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from eval.likelihood import score_features
from unlearn.data import Feature, collate
from unlearn.gradients import Grad, TaskGradients
from unlearn.config import CONFIG_DIR
from unlearn.losses import Batch, lm_loss
from unlearn.models import frozen
from unlearn.registry import Registry

METHODS: Registry[type["Method"]] = Registry("method")
register_method = METHODS.register
# registry meta ``forget_task=True``: the method's forget loss is an objective to *minimize* that a
# direction method can take as its forget task (``method=ngdiff method.forget_loss=npo``)
FORGET_TASK = "forget_task"


@dataclass
class MethodContext:
    """What a method may use besides its batches, handed to :meth:`Method.setup` once per run.

    Batches carry ``index``: the positions of their examples in ``forget_rows`` / ``retain_rows``,
    so per-example quantities precomputed in ``setup`` (reference log-probs, alternative answers)
    can be gathered every step without recomputation.
    """

    # (row, answer, prefix_tokens) -> the feature of the row's prompt followed by ``answer`` (None: the
    # row's own answer), only the answer scored (Benchmark.answer_feature): TOFU's prompt is the
    # question in the run's template; a raw-text chunk's (MUSE) is its first prefix_tokens tokens
    encode: Callable[[Mapping[str, Any], str | None, int], Feature]
    forget_rows: Sequence[Mapping[str, Any]]
    retain_rows: Sequence[Mapping[str, Any]]
    forget_features: Sequence[Any]
    retain_features: Sequence[Any]
    pad_id: int
    device: torch.device
    load_reference: Callable[[], torch.nn.Module] | None = None  # a frozen copy of the target


class Method:
    """Base: each task's loss is the LM loss on its batch; subclasses set ``tasks`` and the combination."""

    tasks: tuple[str, ...] = ("forget", "retain")

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        # ``forget_loss``: another method's forget objective as this method's forget task (None: L_F)
        self.forget_objective = forget_objective(cfg)

    def check_model(self, model_cfg: Mapping[str, Any] | None) -> None:
        """Reject, before any work, a setting the model's config already rules out (RMU's layer)."""
        if self.forget_objective is not None:
            self.forget_objective.check_model(model_cfg)

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Called once before the optimizer is built: a method that trains only some parameters
        (RMU's layers) turns ``requires_grad`` off for the others here."""
        if self.forget_objective is not None:
            self.forget_objective.prepare_model(model)

    def setup(self, ctx: MethodContext) -> None:
        """Precompute what stays fixed during the run (called once, before the first step)."""
        if self.forget_objective is not None:
            self.forget_objective.setup(ctx)

    def needs_context(self) -> bool:
        """Whether ``setup`` precomputes from the run's data (a reference model, alternative answers)."""
        if self.forget_objective is not None and self.forget_objective.needs_context():
            return True
        return type(self).setup is not Method.setup

    @property
    def unused_parameters(self) -> bool:
        """Whether a task's loss can leave some trainable parameter without a gradient (RMU training
        every parameter: its losses stop at layer l). Data parallelism must then look for such
        parameters at every backward (DDP's ``find_unused_parameters``: a graph search and one more
        all-reduce each time, so it is asked for only here)."""
        return self.forget_objective is not None and self.forget_objective.unused_parameters

    def after_step(self, losses: Mapping[str, float], epoch: int = 0) -> dict[str, Any]:
        """Called by the engine after each step with its global task losses and the step's epoch (from
        0: the epochs ended before it); returns what to log in the step's row (PDU's dual variable).
        State it keeps goes in :meth:`state_dict`."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The method's own state that changes during a run (saved in the resumable state)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resumed run)."""

    def task_losses(
        self, model: torch.nn.Module, batches: Mapping[str, Batch]
    ) -> dict[str, Callable[[], Tensor]]:
        """One closure per task; the engine runs each in its own forward/backward."""
        return {t: partial(self.task_loss, t, model, batches[t]) for t in self.tasks}

    def task_loss(self, task: str, model: torch.nn.Module, batch: Batch) -> Tensor:
        """Task ``task``'s objective on its batch: the LM loss (L_F, L_R) unless a method overrides it.

        The retain term of every method is this LM loss; overriding only the forget task keeps it.
        With ``forget_loss`` the forget task is minus the named objective: every combination here
        treats "forget" as a loss to *raise* (c_forget < 0), so raising -L_obj lowers L_obj.
        """
        if task == "forget" and self.forget_objective is not None:
            return -self.forget_objective.task_loss("forget", model, batch)
        return lm_loss(model, batch)

    @property
    def lm_tasks(self) -> tuple[str, ...]:
        """The tasks whose loss is the plain LM loss of their batch (L_F, L_R), so that their step
        values can stand in for GeN's L0; a method that overrides a task's loss leaves it out."""
        return tuple(t for t in self.tasks if not (t == "forget" and self.forget_objective is not None))

    @property
    def token_mean_tasks(self) -> tuple[str, ...]:
        """The tasks whose loss is a token mean normalized by the batch's ``token_normalizer`` (the
        LM losses, and token-level objectives through :func:`unlearn.losses.scored_mean`): the engine
        adds their micro-batches as they are. Any other task's loss is taken as a per-sequence mean
        and weighted by its micro-batch's share of the step's sequences."""
        out = set(self.lm_tasks)
        if self.forget_objective is not None and "forget" in self.forget_objective.token_mean_tasks:
            out.add("forget")
        return tuple(t for t in self.tasks if t in out)

    def weights(self) -> dict[str, float] | None:
        """Scalarization weights w_t (d = sum_t w_t g_t); ``None`` for a direction method."""
        return None

    def combination(self, grads: TaskGradients) -> dict[str, float]:
        """The coefficients c_t of the update direction d = sum_t c_t g_t, from the task gradients'
        geometry (every direction here -- NGDiff, MGDA, PCGrad, CAGrad, IMTL-G -- is such a
        combination; the engine forms d in place, so it costs no extra gradient buffer)."""
        w = self.weights()
        if w is None:
            raise NotImplementedError(f"{type(self).__name__} must define weights() or combination()")
        return dict(w)

    def direction(self, grads: TaskGradients) -> Grad:
        """d itself, as fresh tensors (the task gradients are left untouched)."""
        return grads.combine(self.combination(grads))


class RetainRegularized(Method):
    """Minimize c_F * L_forget + c_R * L_R, where L_forget is the method's own forget objective (the
    NPO, SimNPO, IDK or DPO loss: already a loss to *minimize*, so c_F > 0) and L_R the retain LM
    loss. ``retain_weight: 0`` drops the retain task altogether (and its backward pass).
    """

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        super().__init__(cfg)
        self.forget_weight = float(cfg.get("forget_weight", 1.0))
        self.retain_weight = float(cfg.get("retain_weight", 1.0))
        self.tasks = ("forget", "retain") if self.retain_weight else ("forget",)

    @property
    def lm_tasks(self) -> tuple[str, ...]:
        return tuple(t for t in self.tasks if t == "retain")

    def weights(self) -> dict[str, float]:
        w = {"forget": self.forget_weight, "retain": self.retain_weight}
        return {t: w[t] for t in self.tasks}


class TwoTaskDirection(Method):
    """d = a u + b v for the two descent task vectors u = g_R (descend L_R) and v = -g_F (descend
    -L_F), with (a, b) a function of their Gram matrix only: the multi-task directions (MGDA,
    PCGrad, CAGrad, IMTL-G) for two tasks are scalar geometry on <u,u>, <v,v>, <u,v>.
    """

    def combination(self, grads: TaskGradients) -> dict[str, float]:
        uu, vv = grads.dot("retain", "retain"), grads.dot("forget", "forget")
        a, b = self.coefficients(uu, vv, -grads.dot("retain", "forget"))
        return {"retain": a, "forget": -b}

    def coefficients(self, uu: float, vv: float, uv: float) -> tuple[float, float]:
        raise NotImplementedError


def positive_beta(cfg: Mapping[str, Any], method: str, default: float) -> float:
    """The inverse temperature ``beta`` of a preference loss (NPO, SimNPO, DPO): must be > 0."""
    beta = float(cfg.get("beta", default))
    if beta <= 0:
        raise ValueError(f"{method} needs beta > 0, got {beta}")
    return beta


def nonnegative(cfg, key: str, default: float, method: str) -> float:
    value = float(cfg.get(key, default))
    if value < 0:
        raise ValueError(f"{method} needs {key} >= 0, got {value}")
    return value


def load_reference(ctx: MethodContext) -> torch.nn.Module:
    """The frozen target on the run's device; methods call this once, in ``setup``."""
    if ctx.load_reference is None:
        raise ValueError("this method needs a reference model, but MethodContext.load_reference is None")
    return frozen(ctx.load_reference()).to(ctx.device)  # frozen() again: never a trainable copy


def reference_logprobs(
    reference: torch.nn.Module, features: Sequence[Feature], ctx: MethodContext, batch_size: int
) -> Tensor:
    """log pi_ref(y|x) of each feature (summed over scored tokens), in order, on ``ctx.device``.

    For a fixed set of texts (the forget set, its IDK answers) these are computed once per run
    (batched, inference mode) and gathered by ``batch["index"]`` each step.
    """
    nll, _ = score_features(reference, features, batch_size, ctx.pad_id)
    return torch.as_tensor(-nll, dtype=torch.float32, device=ctx.device)


def features_batch(features: Sequence[Feature], index: Tensor, pad_id: int) -> dict[str, Tensor]:
    """The padded batch of ``features[index]`` on ``index``'s device (e.g. the IDK answers of a
    forget batch, whose ``index`` points into the forget set)."""
    return {k: v.to(index.device) for k, v in collate([features[i] for i in index.tolist()], pad_id).items()}


def method_defaults(name: str) -> dict[str, Any]:
    """A method's own keys and their defaults, as its config file (conf/method/<name>.yaml) sets them."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "method" / f"{name}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) if path.exists() else {}
    return {k: v for k, v in node.items() if k not in ("defaults", "name")}


def forget_objectives() -> list[str]:
    """The methods whose forget loss can be a direction method's forget task (besides ``ga``)."""
    return [n for n in METHODS if METHODS.meta[n].get(FORGET_TASK)]


def forget_objective(cfg: Mapping[str, Any]) -> Method | None:
    """The method whose forget objective ``cfg.forget_loss`` names, configured by its own file's
    defaults updated with ``cfg.forget_args``; ``ga`` (or no key): None, the forget task is L_F."""
    name = cfg.get("forget_loss") or "ga"
    if name == "ga":
        return None
    valid = ", ".join(["ga", *forget_objectives()])
    if name not in METHODS or not METHODS.meta[name].get(FORGET_TASK):
        raise ValueError(f"method.forget_loss={name} is not a forget objective; valid: {valid}")
    defaults = method_defaults(name)
    args = dict(cfg.get("forget_args") or {})
    unknown = sorted(set(args) - set(defaults))
    if unknown:
        raise ValueError(f"method.forget_args.{unknown[0]} is not a key of {name} "
                         f"(conf/method/{name}.yaml); valid: {', '.join(sorted(defaults))}")
    return METHODS.get(name)({**defaults, **args, "name": name, "retain_weight": 0.0})


def build_method(cfg: Mapping[str, Any]) -> Method:
    return METHODS.get(cfg["name"])(cfg)
