"""Models and data are local folders or Hub ids, told apart before any work; without a network the
Hub is not retried: offline, a source must be cached or the run fails at once with one line."""
from __future__ import annotations

import pytest
from huggingface_hub import constants

from tests.conftest import compose_cfg
from unlearn import sources
from unlearn.pipeline import run
from unlearn.schema import ConfigError
from unlearn.sources import Source, classify_source, config_sources, ensure_hub_access


def cache_model(repo_id: str, filename: str = "config.json", repo_type: str = "models") -> None:
    """huggingface_hub's cache layout: refs/main names a snapshot that holds the file."""
    from pathlib import Path

    repo = Path(constants.HF_HUB_CACHE) / f"{repo_type}--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / filename).write_text("{}")


def test_a_folder_is_local_and_an_org_name_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    assert classify_source("model.target", tmp_path / "ckpt") == Source("model.target", str(tmp_path / "ckpt"), True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert classify_source("model.target", "org/name").local  # a relative folder wins over the Hub id
    assert not classify_source("model.target", "meta-llama/Llama-2-7b-hf").local
    assert not classify_source("model.target", "gpt2").local
    logs = tmp_path / "TOFU_EVAL.json"
    logs.write_text("{}")
    assert classify_source("eval.retain_logs", logs, None, files=True).local


@pytest.mark.parametrize("value, message", [
    ("/home/me/ckpt/tofu_phi_full", "model.target: no such folder '/home/me/ckpt/tofu_phi_full'"),
    ("./ckpt", "model.target: no such folder './ckpt' (from "),
    ("~/no_such_ckpt_here", "model.target: no such folder '~/no_such_ckpt_here'"),
    ("me/ckpt/phi", "model.target: no such folder 'me/ckpt/phi' (from "),
    ("tofu phi", "model.target: 'tofu phi' is neither a local folder nor a Hub id (org/name"),
    ("org--name", "model.target: 'org--name' is neither a local folder nor a Hub id"),
    ("", "model.target is empty: give a local folder or a Hub id (org/name)"),
])
def test_a_bad_source_is_one_line(value, message):
    with pytest.raises(ConfigError) as e:
        classify_source("model.target", value)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_file_where_a_folder_is_needed_and_a_local_only_key(tmp_path):
    (tmp_path / "model.bin").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        classify_source("model.target", tmp_path / "model.bin")
    with pytest.raises(ConfigError, match="^dataset.path: no such folder 'org/TOFU'"):
        classify_source("dataset.path", "org/TOFU", None)  # a local-only key never means the Hub


def test_a_config_names_its_sources():
    assert config_sources(compose_cfg(["debug=tiny"])) == []  # the embedded world: nothing from outside
    got = {s.key: (s.value, s.kind) for s in config_sources(compose_cfg(["experiment=muse_news"]))}
    assert got == {"model.target": ("muse-bench/MUSE-news_target", "model"),
                   "model.retain": ("muse-bench/MUSE-news_retrain", "model"),
                   "model.tokenizer": ("meta-llama/Llama-2-7b-hf", "tokenizer"),
                   "dataset.hub_id": ("muse-bench/MUSE-News", "dataset")}
    cfg = compose_cfg(["experiment=tofu_phi_forget05", "eval.retain_logs=/data/none", "eval.mia.extra_attacks=[reference]"])
    with pytest.raises(ConfigError, match="^eval.retain_logs: no such file or folder '/data/none'"):
        config_sources(cfg)
    cfg = compose_cfg(["experiment=tofu_phi_forget05", "eval.mia.extra_attacks=[reference]",
                       "eval.mia.reference_model=/ckpt/ref"])
    with pytest.raises(ConfigError, match="^eval.mia.reference_model: no such folder '/ckpt/ref'"):
        config_sources(cfg)


def test_a_source_left_to_give_is_one_line():
    with pytest.raises(ConfigError, match=r"^model.target must be given \(\?\?\?\): a local folder or a Hub id, "
                                          r"e.g. model.target=/path/to/folder$"):
        config_sources(compose_cfg(["model=hf"]))


def test_no_hub_source_is_offline_without_a_connection(hub, monkeypatch):
    import datasets

    monkeypatch.setattr(sources, "hub_reachable", lambda *a: pytest.fail("no Hub source: nothing to check"))
    assert ensure_hub_access([]) is True
    assert constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_an_unreachable_hub_is_offline_and_names_what_is_missing(hub):
    hub(up=False)
    missing = [classify_source("model.target", "org/target"), classify_source("dataset.hub_id", "locuslab/TOFU", "dataset")]
    with pytest.raises(ConfigError) as e:
        ensure_hub_access(missing)
    msg = str(e.value)
    assert "\n" not in msg and constants.HF_HUB_OFFLINE
    assert msg.startswith("model.target='org/target', dataset.hub_id='locuslab/TOFU' are not local folders and not in "
                          f"the Hugging Face cache ({constants.HF_HUB_CACHE}), and the Hub ({constants.ENDPOINT}) is "
                          "unreachable from here (offline): download them where it is reachable (`hf download org/target`")
    cache_model("org/target")
    cache_model("locuslab/TOFU", "README.md", "datasets")
    assert ensure_hub_access(missing) is True  # cached: they load offline


def test_datasets_own_cache_counts(hub, tmp_path):
    hub(up=False)
    (tmp_path / "datasets" / "locuslab___tofu").mkdir(parents=True)
    assert ensure_hub_access([classify_source("dataset.hub_id", "locuslab/TOFU", "dataset")]) is True


def test_a_reachable_hub_stays_online(hub):
    hub(up=True)
    assert ensure_hub_access([classify_source("model.target", "org/target")]) is False
    assert not constants.HF_HUB_OFFLINE


def test_the_persons_own_setting_wins(hub, monkeypatch):
    monkeypatch.setattr(sources, "_USER_OFFLINE", "0")
    monkeypatch.setattr(sources, "hub_reachable", lambda *a: pytest.fail("HF_HUB_OFFLINE=0: no check"))
    assert ensure_hub_access([classify_source("model.target", "org/target")]) is False
    monkeypatch.setattr(sources, "_USER_OFFLINE", "1")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1 is set: unset it to download it, or pass a local folder$"):
        ensure_hub_access([classify_source("model.target", "org/target")])


def test_a_missing_checkpoint_fails_before_any_work(tmp_path):
    cfg = compose_cfg([f"paths.root={tmp_path / 'out'}", "model=hf", "model.target=/home/me/ckpt/tofu_phi_full"])
    rec = run(cfg, run_dir=tmp_path / "r")
    assert rec["status"] == "failed" and rec["error"]["type"] == "ConfigError"
    assert rec["error"]["message"] == "model.target: no such folder '/home/me/ckpt/tofu_phi_full'"
    assert not (tmp_path / "out" / "cache").exists()  # no world built or reused, no evaluation started
