"""The references' recipes, as composed and as counted: every number of conf/recipe/ against its
source (TOFU forget.py, MUSE's baselines scripts, open-unlearning's trainer configs), and the
step, warmup and rate arithmetic their Trainer does (transformers' linear schedule)."""
import pytest

from tests.conftest import compose_cfg, sampled
from unlearn.batching import PairedBatches
from unlearn.schedulers import build_scheduler

# recipe -> (method values, model.precision, model.train_max_length, scheduler values)
RECIPES = {
    "tofu": ({"lr": 1e-5, "epochs": 5, "batch_size": 4, "effective_batch": 32, "weight_decay": 0.01,
              "optimizer": "adamw", "step_rule": "tofu", "max_grad_norm": None},
             "bf16-mixed", 500, {"name": "linear", "warmup_epochs": 1, "warmup_ratio": 0.0, "warmup_from_zero": True}),
    "tofu_open_unlearning": ({"lr": 1e-5, "epochs": 10, "batch_size": 4, "effective_batch": 32, "weight_decay": 0.01,
                              "optimizer": "adamw", "step_rule": "full_batches", "max_grad_norm": None},
                             "bf16-mixed", 512,
                             {"name": "linear", "warmup_epochs": 1, "warmup_ratio": 0.0, "warmup_from_zero": True}),
    "muse": ({"lr": 1e-5, "epochs": 10, "batch_size": 4, "effective_batch": 4, "weight_decay": 0.0,
              "optimizer": "adamw", "step_rule": "epochs", "max_grad_norm": 1.0},
             "bf16-true", None, {"name": "constant", "warmup_ratio": 0.0, "warmup_epochs": 0}),
    "muse_open_unlearning": ({"lr": 1e-5, "epochs": 10, "batch_size": 4, "effective_batch": 64, "weight_decay": 0.0,
                              "optimizer": "adamw", "step_rule": "full_batches", "max_grad_norm": None},
                             "bf16-mixed", None, {"name": "constant", "warmup_ratio": 0.0, "warmup_epochs": 0}),
    "wmdp": ({"lr": 5e-5, "epochs": 1, "max_steps": 150, "batch_size": 4, "effective_batch": 4, "weight_decay": 0.0,
              "optimizer": "adamw", "step_rule": "epochs", "max_grad_norm": None},
             "bf16-true", None, {"name": "constant", "warmup_ratio": 0.0, "warmup_epochs": 0}),
    "wmdp_open_unlearning": ({"lr": 5e-5, "epochs": 1, "max_steps": 80, "batch_size": 1, "effective_batch": 16,
                              "weight_decay": 0.0, "optimizer": "adamw", "step_rule": "full_batches", "max_grad_norm": 1.0},
                             "bf16-true", None, {"name": "constant", "warmup_ratio": 0.0, "warmup_epochs": 0}),
}
# RMU's own values in each WMDP recipe (conf/method_recipe/rmu_<recipe>.yaml): the WMDP authors' run_rmu_zephyr.ipynb
# and rmu/unlearn.py defaults; open-unlearning's experiment/unlearn/wmdp/default.yaml over trainer/RMU.yaml
RMU_WMDP = {
    "wmdp": {"layer": 7, "update_layers": 3, "update_params": r"mlp\.down_proj\..*", "steering_coeff": 6.5,
             "retain_weight": 1200.0, "forget_weight": 1.0, "positions": "attended", "direction_seed": 42},
    "wmdp_open_unlearning": {"layer": 7, "update_layers": 3, "update_params": r"mlp\.down_proj\..*",
                             "steering_coeff": 2.0, "retain_weight": 1.0, "forget_weight": 1.0, "positions": "scored"},
}
EXPERIMENTS = {f"tofu_{m}_forget{s}": ("tofu", f"tofu_{m}", f"forget{s}") for m in ("llama2", "phi") for s in ("01", "05", "10")}
EXPERIMENTS |= {"muse_news": ("muse", "muse_news", "news"), "muse_books": ("muse", "muse_books", "books")}


def assert_recipe(cfg, recipe):
    method, precision, train_max_length, scheduler = RECIPES[recipe]
    for key, value in method.items():
        assert cfg.method[key] == value, (recipe, key)
    assert cfg.model.precision == precision
    assert cfg.model.get("train_max_length") == train_max_length
    for key, value in scheduler.items():
        assert cfg.scheduler[key] == value, (recipe, key)


@pytest.mark.parametrize("experiment", sampled(list(EXPERIMENTS), ("tofu_llama2_forget10", "tofu_phi_forget01", "muse_news")))
def test_every_experiment_is_its_reference_recipe(experiment):
    recipe, model, split = EXPERIMENTS[experiment]
    cfg = compose_cfg([f"experiment={experiment}"])
    assert (cfg.model.name, cfg.dataset.split, cfg.method.name) == (model, split, "ngdiff")
    assert_recipe(cfg, recipe)
    assert cfg.model.dtype == ("bfloat16" if recipe == "tofu" else "float32")  # the storage dtype
    # the paper's automatic rate on the same recipe, and the open-unlearning variant, by one switch
    gen = compose_cfg([f"experiment={experiment}", "scheduler=gen", "method=npo"])
    assert (gen.scheduler.name, gen.method.name, gen.method.lr) == ("gen", "npo", 1e-5)
    variant = f"{recipe}_open_unlearning"
    assert_recipe(compose_cfg([f"experiment={experiment}", f"recipe={variant}"]), variant)


@pytest.mark.parametrize("recipe", list(RMU_WMDP))
def test_wmdp_recipes_are_their_sources(recipe):
    cfg = compose_cfg(["dataset=wmdp", "model=hf", "model.target=/ckpt", "method=rmu", f"recipe={recipe}"])
    assert_recipe(cfg, recipe)
    assert {k: cfg.method[k] for k in RMU_WMDP[recipe]} == RMU_WMDP[recipe]
    # RMU reads WikiText; open-unlearning the domain's retain corpus, in 512-token chunks
    assert (cfg.dataset.retain_corpus, cfg.dataset.chunk_length) == (
        ("wikitext" if recipe == "wmdp" else "corpus"), 512)


@pytest.mark.parametrize("n_forget, steps, warmup", [(40, 6, 1), (200, 31, 6), (400, 62, 12)])
def test_tofu_step_count_and_warmup(n_forget, steps, warmup):
    # forget.py: max_steps = num_epochs * len // 32, warmup_steps = max(1, len // 32)
    pairs = PairedBatches([{}] * n_forget, [{}], 32, 0)
    total = pairs.total_steps("tofu", 5)
    sched = build_scheduler(RECIPES["tofu"][3], 1e-5, total, n_forget / 32)
    assert (total, sched.warmup) == (steps, warmup)


def test_tofu_rates_are_transformers_linear_schedule():
    # forget01: 6 steps, warmup 1 -> get_linear_schedule_with_warmup: 0, then (6 - s) / 5
    sched = build_scheduler(RECIPES["tofu"][3], 1e-5, 6, 40 / 32)
    assert [sched.lr(s) for s in range(6)] == pytest.approx([0.0, 1e-5, 0.8e-5, 0.6e-5, 0.4e-5, 0.2e-5])


def test_open_unlearning_counts_full_batches():
    # forget10 on 2 GPUs, 4 x 4: len(dataloader) // grad_accum = 12 updates an epoch, 10 epochs, warmup 12
    pairs = PairedBatches([{}] * 400, [{}], 32, 0, drop_last=True)
    total = pairs.total_steps("full_batches", 10)
    assert total == 120 and build_scheduler(RECIPES["tofu_open_unlearning"][3], 1e-5, total, 400 / 32).warmup == 12
    assert PairedBatches([{}] * 400, [{}], 32, 0).total_steps("epochs", 10) == 130  # 12 + the rest of 16


def test_unknown_step_rule_fails_before_any_work(debug_cfg, tmp_path):
    from unlearn.pipeline import run

    rec = run(debug_cfg("method.step_rule=trainer"), run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and "valid: epochs, tofu, full_batches" in rec["error"]["message"]
    assert "stages" not in rec


def test_optimizer_names_fail_clearly(monkeypatch):
    import builtins

    from unlearn.optimizers import check_optimizer

    with pytest.raises(ValueError, match="unknown method.optimizer 'adam'; valid: adamw, sgd, adamw_8bit"):
        check_optimizer("adam")
    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(ValueError, match=r"needs bitsandbytes: pip install -e \".\[bnb\]\""):
        check_optimizer("paged_adamw_32bit")
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", object())  # installed, but no GPU
    with pytest.raises(ValueError, match="needs a CUDA GPU; on CPU use adamw"):
        check_optimizer("adamw_8bit", on_gpu=False)


@pytest.mark.parametrize("override, message", [
    ("method.max_grad_norm=0", "method.max_grad_norm must be > 0 or null, got 0"),
    ("method.effective_batch=3", "method.effective_batch=3 is not method.batch_size=4"),
    ("method.optimizer=adam", "unknown method.optimizer 'adam'"),
])
def test_bad_real_scale_settings_fail_before_any_work(override, message, debug_cfg, tmp_path):
    from unlearn.pipeline import run

    rec = run(debug_cfg(override), run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and message in rec["error"]["message"] and "stages" not in rec
