"""Methods under open-unlearning's recipes take open-unlearning's defaults (conf/method_recipe/):
every ``method_args`` key of its trainer configs, read from its repository at test time, against our
composed config; the behaviours its code fixes without a key; and our defaults everywhere else."""
from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from tests import ou_reference as ref
from tests.conftest import compose_cfg, covering
from unlearn.config import CONFIG_DIR
from unlearn.methods import METHODS, build_method
from unlearn.methods.base import method_defaults

OU_RECIPES = ("tofu_open_unlearning", "muse_open_unlearning")
#: open-unlearning's trainer (configs/trainer/<name>.yaml) -> our method
TRAINERS = {"GradAscent": "ga", "GradDiff": "gdiff", "NPO": "npo", "DPO": "idk_dpo", "SimNPO": "simnpo",
            "RMU": "rmu", "UNDIAL": "undial", "WGA": "wga", "SatImp": "satimp", "CEU": "ceu", "PDU": "pdu"}


def _same(value, args):
    return value


def _layer(value, args):  # module_regex model\.layers\.<l>: the output of decoder layer l
    return int(re.fullmatch(r"model\\\.layers\\\.(\d+)", value).group(1))


def _params(value, args):  # trainable_params_regex [.*]: every parameter; anything else has no counterpart
    assert list(value) == [".*"], f"no update_params for {list(value)}"
    return "all"


#: their method_args key -> (our key, their value and args -> ours); our key None: a setting we
#: implement one way only, and the value theirs must have
KEYS = {
    "gamma": ("forget_weight", _same),
    "alpha": ("retain_weight", _same),
    "beta": ("beta", _same),
    "retain_loss_type": (None, "NLL"),  # every method's retain term here is the LM loss (NLL), RMU aside
}
METHOD_KEYS = {
    "rmu": {"steering_coeff": ("steering_coeff", _same), "module_regex": ("layer", _layer),
            "trainable_params_regex": ("update_params", _params),
            "retain_loss_type": ("retain_loss", lambda v, a: {"EMBED_DIFF": "embed_diff", "NLL": "nll", "KL": "kl"}[v])},
    "simnpo": {"delta": ("delta", lambda v, a: v * a["beta"])},  # their sigmoid(beta (nll/|y| - delta)): ours is beta x theirs
    "satimp": {"beta1": ("beta1", _same), "beta2": ("beta2", _same)},
    "ceu": {"ignore_first_n_answer_tokens": ("ignore_first_n_answer_tokens", _same)},
    "pdu": {"alpha": ("dual_init", _same),  # lambda_0: the retain preference the dual steps move
            "dual_step_size": ("dual_lr", lambda v, a: v if a["primal_dual"] else 0.0),
            "primal_dual": (None, True),  # folded into dual_lr (0: a fixed scalarization)
            "dual_update_upon": (None, "step"),  # ours: every step
            "dual_warmup_epochs": ("dual_warmup_epochs", _same),
            "retain_loss_eps": ("eps", _same),
            "loss_names": (None, ["forget_loss", "retain_loss"])},  # their log's names
}
#: what their code does without a key, and the option of ours that does it
CODE = {
    "undial": {"positions": "all"},  # src/trainer/utils.py:84-99 compute_undial_loss: every position, loss.mean()
    "pdu": {"margin_positions": "labels"},  # src/trainer/unlearn/pdu.py:115-122: the mask labels != -100, unshifted
}


def method_args(trainer: str) -> dict:
    """A trainer config's method_args, those of the trainers in its defaults list first (Hydra's merge)."""
    node = OmegaConf.to_container(OmegaConf.create(ref.read(f"configs/trainer/{trainer}.yaml")))
    args = {}
    for parent in node.get("defaults", []):
        args.update(method_args(parent))
    args.update({k: v for k, v in (node.get("method_args") or {}).items() if v != "???"})  # ???: set per run
    return args


def equal(ours, theirs) -> bool:
    return ours == pytest.approx(theirs) if isinstance(theirs, float) else ours == theirs


def method_of(stem: str) -> str:
    """satimp_tofu_open_unlearning -> satimp (a method name may hold underscores: idk_dpo)."""
    return max((m for m in METHODS if stem.startswith(f"{m}_")), key=len)


@pytest.mark.skipif(ref.unavailable_reason() is not None, reason=str(ref.unavailable_reason()))
@pytest.mark.parametrize("recipe", OU_RECIPES)
@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_every_method_arg_of_open_unlearning_is_ours_under_its_recipe(trainer, recipe):
    name = TRAINERS[trainer]
    method = compose_cfg([f"method={name}", f"recipe={recipe}"]).method
    args = method_args(trainer)
    keys = {**KEYS, **METHOD_KEYS.get(name, {})}
    assert set(args) <= set(keys), f"{trainer}.yaml keys without a mapping: {sorted(set(args) - set(keys))}"
    for key, value in args.items():
        ours, convert = keys[key]
        if ours is None:
            assert value == convert, f"{trainer}.{key}={value!r}: we implement only {convert!r}"
        else:
            assert equal(method[ours], convert(value, args)), f"{trainer}.{key}={value!r} -> method.{ours}"


@pytest.mark.parametrize("recipe", OU_RECIPES)
@pytest.mark.parametrize("name", list(CODE))
def test_what_open_unlearnings_code_fixes_is_ours_under_its_recipe(name, recipe):
    method = compose_cfg([f"method={name}", f"recipe={recipe}"]).method
    for key, value in CODE[name].items():
        assert method[key] == value, f"{name}: method.{key}"


@pytest.mark.skipif(ref.unavailable_reason() is not None, reason=str(ref.unavailable_reason()))
def test_every_trainer_of_open_unlearning_is_mapped():
    listed = ref.read("src/trainer/__init__.py")
    trainers = set(re.findall(r"^_register_trainer\((\w+)\)", listed, re.M)) - {"Trainer", "FinetuneTrainer"}
    assert trainers == set(TRAINERS)


def method_recipe_files() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "method_recipe").glob("*.yaml"))


def test_each_method_recipe_file_names_a_method_and_a_recipe():
    recipes = {p.stem for p in (CONFIG_DIR / "recipe").glob("*.yaml")}
    # the group is optional: a misspelt file would silently never be read
    for stem in method_recipe_files():
        assert any(stem == f"{m}_{r}" for m in METHODS for r in recipes), stem
        assert stem[len(method_of(stem)) + 1:] in recipes


@pytest.mark.parametrize(("name", "recipe"), covering(sorted(METHODS), list(OU_RECIPES)))
def test_every_method_composes_and_builds_under_open_unlearnings_recipes(name, recipe):
    cfg = compose_cfg([f"method={name}", f"recipe={recipe}"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.method.name == name and cfg.method.lr == 1e-5
    assert set(cfg.method) == set(compose_cfg([f"method={name}"]).method)  # no key the method file lacks
    build_method(cfg.method)  # every value the method reads is valid (RMU's layer 7, PDU's warm-up epochs)


@pytest.mark.parametrize(("name", "extra"), covering(sorted({method_of(s) for s in method_recipe_files()}),
                                                     ["", "recipe=tofu", "recipe=muse", "experiment=muse_news"]))
def test_our_defaults_without_an_open_unlearning_recipe(name, extra):
    overrides = [extra] if extra else []
    method = compose_cfg([f"method={name}", *overrides]).method
    for key, value in method_defaults(name).items():
        assert method[key] == value, (name, key)


def test_command_line_and_forget_objectives_are_untouched_by_the_recipe():
    cfg = compose_cfg(["method=satimp", "recipe=tofu_open_unlearning", "method.forget_weight=0.5"])
    assert (cfg.method.forget_weight, cfg.method.retain_weight) == (0.5, 1.0)
    ou = compose_cfg(["experiment=ou_llama32_1b_forget01", "method=rmu"]).method  # the experiment's recipe
    assert (ou.layer, ou.update_params) == (7, "all")
    # another method's objective as NGDiff's forget task: that method's own file's defaults
    ngdiff = compose_cfg(["method=ngdiff", "recipe=tofu_open_unlearning", "method.forget_loss=undial"])
    assert build_method(ngdiff.method).forget_objective.positions == "scored"
