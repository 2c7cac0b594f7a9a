"""Every config in conf/ composes; bad choices fail with the valid options listed."""
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from tests.conftest import compose_cfg, covering, sampled
from unlearn.config import CONFIG_DIR
from unlearn.methods import METHODS
from unlearn.schedulers import SCHEDULERS


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml") if not p.stem.startswith("_"))


def test_defaults_compose_to_the_documented_run():
    cfg = compose_cfg()
    assert (cfg.method.name, cfg.scheduler.name, cfg.dataset.name, cfg.model.name) == (
        "ngdiff", "gen", "tofu_synth", "tiny_llama")
    assert cfg.dataset.split == "forget10" and cfg.seed == 0
    assert not OmegaConf.missing_keys(cfg)


@pytest.mark.parametrize(("method", "scheduler"), covering(options("method"), options("scheduler")))
def test_every_method_and_scheduler_composes(method, scheduler):
    cfg = compose_cfg([f"method={method}", f"scheduler={scheduler}"])
    assert cfg.method.name == method and method in METHODS
    # a preset (gen_official) names the scheduler it configures
    assert cfg.scheduler.name in SCHEDULERS and scheduler.split("_")[0] == cfg.scheduler.name
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    for key in ("lr", "epochs", "batch_size", "optimizer", "weight_decay"):
        assert key in cfg.method, f"method={method} lacks {key}"


# the experiments and models compose in the fast tier through the commands the docs show (test_doc_commands)
@pytest.mark.parametrize("group", sampled(["model", "dataset", "eval", "paths", "debug", "experiment", "recipe"],
                                           ("dataset", "eval", "paths", "debug", "recipe")))
def test_every_option_of_the_other_groups_composes(group):
    # `???` marks what a user must give on the command line, e.g. model.target for model=hf
    required = {"hf": ["model.target=/path/to/checkpoint"]}
    for opt in options(group):
        cfg = compose_cfg([f"{group}={opt}", *required.get(opt, [])])
        assert not OmegaConf.missing_keys(cfg), (group, opt)
        OmegaConf.to_container(cfg, resolve=True)


def test_command_line_overrides_reach_the_config():
    cfg = compose_cfg(["method=gdiff", "scheduler=cosine", "method.lr=3e-4", "dataset.split=forget05",
                       "method.retain_weight=2"])
    assert cfg.method.lr == pytest.approx(3e-4)
    assert cfg.dataset.split == "forget05" and cfg.method.retain_weight == 2


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg(["method=gradient_magic"])
    msg = str(e.value.__cause__ or e.value)
    for name in ("ga", "gdiff", "ngdiff"):
        assert name in msg


def test_debug_tiny_shrinks_everything():
    full, tiny = compose_cfg(), compose_cfg(["debug=tiny"])
    assert tiny.dataset.synth.n_authors < full.dataset.synth.n_authors
    assert tiny.model.arch.hidden_size < full.model.arch.hidden_size
    assert str(tiny.paths.root).endswith("/debug")
