"""Content-hash cache for stage artifacts (world, tokenizer, base/target/retain models, evals).

An artifact lives at ``<cache>/<stage>/<key>/`` where ``key`` hashes everything that produced it:
the stage's own config, its inputs' keys, a code version and a fingerprint of the stage-building
source (:data:`STAGE_CODE`). A changed config gives a new key, so a
stale artifact is never silently reused; the same config is built once and reused by every later
run and sweep job. Builds happen in a temporary folder renamed into place when complete, under a
file lock, so parallel sweep jobs never see or build a half-written artifact twice.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)

STAGE_VERSION = 1  # bump when a stage's code changes what it produces

# the code that builds stages (worlds, tokenizer, model training, the reference evaluations' logs):
# its content is part of every key, so a changed training or evaluation path never reuses an
# artifact the old code built (a version number alone was forgotten once: see README, GeN study)
_ROOT = Path(__file__).resolve().parent.parent
STAGE_CODE = ("unlearn/train.py", "unlearn/tokenizer.py", "unlearn/models.py", "unlearn/data.py",
              "unlearn/templates.py", "unlearn/losses.py", "unlearn/preparation.py", "unlearn/worlds/*.py",
              "unlearn/benchmarks/*.py", "eval/likelihood.py", "eval/generation.py", "eval/per_item.py",
              "eval/rouge.py", "eval/tofu/evaluate.py", "eval/muse/evaluate.py", "eval/mia/*.py",
              "eval/lm_eval/*.py")


def code_fingerprint(patterns=STAGE_CODE, root: Path = _ROOT, exclude: tuple[str, ...] = ()) -> str:
    """A hash of the contents of the source files that ``patterns`` match and ``exclude`` does not
    (names sorted): the stage-building code here, a run's result code in :mod:`unlearn.reuse`."""
    h = hashlib.sha256()
    skip = {p for pat in exclude for p in root.glob(pat)}
    for path in sorted({p for pat in patterns for p in root.glob(pat)} - skip):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


_CODE = code_fingerprint()


def to_plain(obj: Any) -> Any:
    if isinstance(obj, (DictConfig, ListConfig)):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def content_hash(obj: Any, n: int = 16) -> str:
    blob = json.dumps(to_plain(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class Artifact:
    stage: str
    key: str
    path: Path
    built: bool  # False when an existing artifact was reused
    seconds: float

    def info(self) -> dict[str, Any]:
        return {"key": self.key, "path": str(self.path), "reused": not self.built, "seconds": round(self.seconds, 3)}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StageCache:
    DONE = "DONE"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def key(self, stage: str, spec: Any) -> str:
        return content_hash({"stage": stage, "version": STAGE_VERSION, "code": _CODE, "spec": spec})

    def get_or_build(self, stage: str, spec: Any, build: Callable[..., None], resumable: bool = False) -> Artifact:
        """Return the artifact for ``spec``; run ``build(tmp_dir)`` only if it does not exist yet.

        ``resumable``: ``build(tmp_dir, partial_dir)``, where ``partial_dir``
        (``<stage>/.partial-<key>/``) outlives a killed build -- a training stage keeps its
        per-epoch state there and the next build of the same key continues from it; it is removed
        once the artifact is complete."""
        key = self.key(stage, spec)
        final = self.root / stage / key
        t0 = time.perf_counter()
        if (final / self.DONE).exists():
            log.info("stage %s: reusing %s", stage, final)
            return Artifact(stage, key, final, False, time.perf_counter() - t0)
        with _locked(self.root / stage / f"{key}.lock"):
            if (final / self.DONE).exists():  # another job built it while we waited
                return Artifact(stage, key, final, False, time.perf_counter() - t0)
            tmp = self.root / stage / f".tmp-{key}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover of a killed build
            tmp.mkdir(parents=True)
            log.info("stage %s: building %s", stage, final)
            partial = self.root / stage / f".partial-{key}"
            try:
                build(tmp, partial) if resumable else build(tmp)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            (tmp / "stage.json").write_text(json.dumps({"stage": stage, "key": key, "spec": to_plain(spec)}, indent=2, default=str))
            (tmp / self.DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            os.replace(tmp, final)
            shutil.rmtree(partial, ignore_errors=True)
        return Artifact(stage, key, final, True, time.perf_counter() - t0)


FINGERPRINT_EDGE = 1 << 20  # bytes read from each end of a file


TOKENIZER_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*", "merges.txt", "*.model",
                   "chat_template*")


def fingerprint(path: str | Path | None, patterns: tuple[str, ...] | None = None) -> str | None:
    """A short hash of a local file or folder (None for a Hub id or nothing): every file's (that
    matches one of ``patterns``, if given) relative name, size, modification time and first and
    last MiB. Overwriting a checkpoint in
    place changes it; reading a 14 GB checkpoint's weights whole, on every run, would not be cheap.
    (A copy that does not keep modification times reads as new: evaluated again, never stale.)"""
    if path is None or not Path(path).exists():
        return None
    root = Path(path)
    files = [root] if root.is_file() else sorted(
        f for f in root.rglob("*") if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)
        and (patterns is None or any(f.match(p) for p in patterns)))
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root) if f != root else f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(FINGERPRINT_EDGE))
            if st.st_size > 2 * FINGERPRINT_EDGE:
                fh.seek(-FINGERPRINT_EDGE, os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]
