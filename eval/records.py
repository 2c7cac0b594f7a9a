"""One versioned JSON record per run, written atomically; the single source of every table.

A record is complete when it exists and parses with a ``status``; an existing complete result
(status ok or diverged) of the same config, code and launch (:mod:`unlearn.reuse`) means the run is
skipped on a re-run unless ``overwrite=true``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

RECORD_NAME = "record.json"
# a config that fails validation where a result (status ok / diverged) is: its record, beside the result
FAILED_RECORD_NAME = "record.failed.json"
RECORD_VERSION = 2  # 2: metrics.<model> = {summary, logs}
STATUSES = ("ok", "diverged", "failed", "interrupted")
PACKAGES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "hydra-core", "omegaconf",
            "scipy", "numpy", "pandas", "rouge-score", "nltk", "lm-eval")


def jsonable(obj: Any) -> Any:
    """NaN/inf become None (JSON has neither); numpy scalars and arrays become Python values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy / torch
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return obj


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` whole or not at all: ``write(fh)`` fills a temporary file of a unique name in
    the same folder (two writers never share one, and the rename stays on one file system), which
    is flushed and fsynced, renamed over ``path``, and the folder fsynced so that the rename itself
    survives a crash. A kill at any point leaves the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda fh: fh.write(text.encode()))


def write_record(run_dir: str | Path, record: Mapping[str, Any], name: str = RECORD_NAME) -> Path:
    if record.get("status") not in STATUSES:
        raise ValueError(f"record status must be one of {STATUSES}, got {record.get('status')!r}")
    path = Path(run_dir) / name
    write_json_atomic(path, {"record_version": RECORD_VERSION, **record})
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed record {path}: {e}") from e
    if not isinstance(rec, dict) or rec.get("status") not in STATUSES:
        raise ValueError(f"malformed record {path}: no valid 'status' (one of {STATUSES})")
    return rec


def complete_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's record if it is complete, else None (missing, malformed or of an older record
    version -> run again)."""
    path = Path(run_dir) / RECORD_NAME
    if not path.exists():
        return None
    try:
        rec = load_record(path)
    except ValueError:
        return None
    return rec if rec.get("record_version") == RECORD_VERSION else None


def git_info(cwd: str | Path | None = None) -> dict[str, Any]:
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment_info() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions}
