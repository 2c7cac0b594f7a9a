"""Where a model, tokenizer or data set comes from -- a local folder or a Hugging Face Hub id --
decided before any work, and whether the Hub can be reached at all.

* :func:`classify_source` takes one config value and says what it is (:class:`Source`), or raises
  the one-line :class:`~unlearn.schema.ConfigError` a person should see: a value that looks like a
  path (starts with ``/``, ``.`` or ``~``, or has more parts than a Hub id's ``org/name``) and is
  not there is "no such folder" (never a Hub lookup); anything else must be a valid Hub id.
* :func:`ensure_hub_access` takes the sources of one run and sets the Hub mode before anything
  touches the Hub: offline when no source is a Hub id, or when the Hub's endpoint (``HF_ENDPOINT``
  aware; through the proxy the environment names, if any) does not accept a connection within
  :data:`PROBE_SECONDS` -- a check made once per process. Offline, every Hub source must already be
  in the Hugging Face cache, or the run fails with one line that says what is missing and how to
  get it. Offline is huggingface_hub's documented switch: the ``HF_HUB_OFFLINE`` environment
  variable, read when the libraries are imported, so the already imported constants
  (``huggingface_hub.constants.HF_HUB_OFFLINE``, which transformers reads at each call, and
  ``datasets.config.HF_HUB_OFFLINE``) are set with it.
* :func:`config_sources` lists a run config's sources (model, tokenizer, data, the retain logs,
  the MIA reference model).

A person's own ``HF_HUB_OFFLINE`` is respected: ``1`` stays offline (sources must be cached), ``0``
stays online (no connection check).
"""
from __future__ import annotations

import functools
import os
import socket
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from unlearn.schema import ConfigError

PROBE_SECONDS = 3.0  # a TCP connection to the Hub (or the proxy) within this, or offline
OFFLINE_ENV = "HF_HUB_OFFLINE"
# the person's own setting, read before this module ever sets it (TRANSFORMERS_OFFLINE: its old name)
_USER_OFFLINE = os.environ.get(OFFLINE_ENV) or os.environ.get("TRANSFORMERS_OFFLINE")
# a file every cached repository of the kind has (datasets fetch the card, which holds the configs)
CACHE_PROBE_FILE = {"model": "config.json", "tokenizer": "tokenizer_config.json", "dataset": "README.md"}
STAGE_REFERENCES = ("target", "retain", "base")  # eval.mia.reference_model names that are not sources


@dataclass(frozen=True)
class Source:
    """One config value that names a model, tokenizer or data set."""

    key: str  # where it came from: "model.target"
    value: str  # as given
    local: bool  # a local folder (or file, where files are allowed); else a Hub id
    kind: str | None = "model"  # model | tokenizer | dataset (its Hub repository kind); None: local only
    revision: str | None = None  # the Hub revision (branch, tag or commit)
    instead: str = "pass a local folder"  # what to do instead of downloading, in the one-line error

    @property
    def path(self) -> Path:
        return Path(self.value).expanduser()


def classify_source(key: str, value: Any, kind: str | None = "model", revision: str | None = None,
                    files: bool = False) -> Source:
    """``value`` of config key ``key`` as a :class:`Source`: an existing local folder (a file too
    with ``files``), else -- unless ``kind`` is None (a local path only) -- a Hub id of that kind.
    One line otherwise: no such folder, a file where a folder is needed, or not a Hub id."""
    text = "" if value is None else str(value).strip()
    what = "file or folder" if files else "folder"
    if not text:
        raise ConfigError(f"{key} is empty: give a local {what}" + ("" if kind is None else " or a Hub id (org/name)"))
    path = Path(text).expanduser()
    if path.is_dir() or (files and path.is_file()):
        return Source(key, text, True, kind, revision)
    if path.exists():
        raise ConfigError(f"{key}: {text!r} is a file, not a folder (a checkpoint saved by save_pretrained, "
                          "or a Hub id org/name)")
    if kind is None or _looks_like_path(text):
        where = "" if path.is_absolute() else f" (from {os.getcwd()})"
        raise ConfigError(f"{key}: no such {what} {text!r}{where}")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        raise ConfigError(f"{key}: {text!r} is neither a local folder nor a Hub id (org/name: letters, digits, "
                          "'-', '_', '.')") from None
    return Source(key, text, False, kind, revision)


def _looks_like_path(text: str) -> bool:
    """A path, not a Hub id: starts with / . ~, or has more parts than org/name (or a backslash)."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def config_sources(cfg) -> list[Source]:
    """Every model, tokenizer and data source a run config names (the embedded world's own stages
    are none)."""
    from omegaconf import OmegaConf

    for key in ("model.target", "model.retain", "dataset.path", "dataset.hub_id"):
        parent, _, leaf = key.partition(".")
        if OmegaConf.is_missing(cfg[parent], leaf):
            raise ConfigError(f"{key} must be given (???): a local folder or a Hub id, e.g. {key}=/path/to/folder")
    out: list[Source] = []
    m, ds, ev = cfg.model, cfg.dataset, cfg.eval
    revision = m.get("revision")
    if m.source == "pretrained":
        out.append(classify_source("model.target", m.target, "model", revision))
        if m.get("retain") is not None:
            out.append(classify_source("model.retain", m.retain, "model", revision))
        if m.get("tokenizer") and str(m.tokenizer) != str(m.target):  # by default the target's own
            out.append(classify_source("model.tokenizer", m.tokenizer, "tokenizer", revision))
    if ds.source == "local":
        out.append(classify_source("dataset.path", ds.get("path"), None))
    elif ds.source == "hub":
        out.append(classify_source("dataset.hub_id", ds.get("hub_id"), "dataset"))
    if ev.get("retain_logs"):
        out.append(classify_source("eval.retain_logs", ev.retain_logs, None, files=True))
    mia = ev.get("mia") or {}
    reference = mia.get("reference_model")
    if "reference" in (mia.get("extra_attacks") or ()) and reference and str(reference) not in STAGE_REFERENCES:
        out.append(classify_source("eval.mia.reference_model", reference, "model"))
    return out


def ensure_hub_access(sources: Sequence[Source]) -> bool:
    """Set the Hub mode for a run with these sources (see the module docstring) and return whether
    it is offline; offline, a Hub source missing from the cache fails with one line."""
    hub = [s for s in sources if not s.local]
    forced = _user_setting()
    if forced is False:  # HF_HUB_OFFLINE=0: the person says the Hub is there
        set_offline(False)
        return False
    offline = forced is True or not hub or not hub_reachable(*_probe_target())
    set_offline(offline)
    missing = [s for s in hub if offline and not in_hub_cache(s)]
    if missing:
        raise ConfigError(_missing_message(missing, forced is True))
    return offline


def _user_setting() -> bool | None:
    if _USER_OFFLINE is None or not _USER_OFFLINE.strip():
        return None
    return _USER_OFFLINE.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _missing_message(missing: Sequence[Source], forced: bool) -> str:
    from huggingface_hub import constants

    one = len(missing) == 1
    names = ", ".join(f"{s.key}={s.value!r}" for s in missing)
    first = missing[0]
    get = f"hf download {'--repo-type dataset ' if first.kind == 'dataset' else ''}{first.value}"
    what = (f"{names} {'is not a local folder' if one else 'are not local folders'} and not in the Hugging Face "
            f"cache ({constants.HF_HUB_CACHE})")
    if forced:
        return f"{what}, and {OFFLINE_ENV}=1 is set: unset it to download {'it' if one else 'them'}, or {first.instead}"
    return (f"{what}, and the Hub ({constants.ENDPOINT}) is unreachable from here (offline): download "
            f"{'it' if one else 'them'} where it is reachable (`{get}`{'' if one else ', ...'}) or {first.instead} "
            "(HF_ENDPOINT: a reachable mirror)")


def in_hub_cache(source: Source) -> bool:
    """Whether the Hugging Face cache holds ``source`` (at its revision), so it loads offline."""
    from huggingface_hub import try_to_load_from_cache

    repo_type = "dataset" if source.kind == "dataset" else "model"
    hit = try_to_load_from_cache(source.value, CACHE_PROBE_FILE[source.kind or "model"],
                                 revision=source.revision, repo_type=repo_type)
    return isinstance(hit, str) or (source.kind == "dataset" and _in_datasets_cache(source.value))


def _in_datasets_cache(hub_id: str) -> bool:
    """datasets' own Arrow cache (``<namespace>___<name>``), which it reloads offline."""
    import datasets
    from datasets.naming import camelcase_to_snakecase

    *namespace, name = hub_id.split("/")
    return (Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*namespace, camelcase_to_snakecase(name)])).is_dir()


def _probe_target() -> tuple[str, int]:
    """(host, port) a connection to the Hub goes to first: its endpoint's, or the proxy's."""
    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


@functools.lru_cache(maxsize=None)
def hub_reachable(host: str, port: int, seconds: float = PROBE_SECONDS) -> bool:
    """Whether ``host:port`` accepts a TCP connection within ``seconds`` (name lookup included: it
    runs in a thread that is given up on); once per process and address."""
    ok: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True, name="hub-probe")
    thread.start()
    thread.join(seconds)
    return bool(ok)


def set_offline(offline: bool) -> None:
    """huggingface_hub's, transformers' and datasets' offline switch, for this process and the
    processes it starts: the environment variable and the constants already read from it."""
    if offline:
        os.environ[OFFLINE_ENV] = "1"
    elif _USER_OFFLINE is None:
        os.environ.pop(OFFLINE_ENV, None)
    else:
        os.environ[OFFLINE_ENV] = _USER_OFFLINE
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = offline
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:  # not imported yet: it reads huggingface_hub's constant when it is
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = offline
