"""Experiment trackers through accelerate's tracking API (``logger=none|tensorboard|wandb|mlflow``,
``conf/logger/``): the resolved config, every step row, the trajectory evaluations and the final
summary. accelerate logs from the main process only; the run's own files (record, steps.jsonl,
run.log) are written either way.

* ``tensorboard``: event files under ``<run dir>/<logger.dir>/<logger.project>`` (``pip install
  tensorboard``, in the ``dev`` extra); the config as hparams (flattened, lists as strings).
* ``wandb``: ``logger.mode: offline`` by default (nothing leaves the machine; ``wandb sync`` later),
  files under the run directory (``pip install -e '.[wandb]'``).
* ``mlflow``: a file store under ``<run dir>/<logger.dir>`` unless ``logger.tracking_uri`` (or
  ``MLFLOW_TRACKING_URI``) names another store (``pip install -e '.[mlflow]'``; the tracking client
  of ``mlflow-skinny`` is enough).
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Mapping

from eval.records import write_json_atomic

TRACKERS = {"none": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def tracker_name(logger_cfg: Mapping[str, Any] | None) -> str:
    return str((logger_cfg or {}).get("name", "none"))


def check_logger(logger_cfg: Mapping[str, Any] | None) -> str:
    """The tracker's name, or a one-line ValueError (unknown name, package not installed)."""
    name = tracker_name(logger_cfg)
    if name not in TRACKERS:
        raise ValueError(f"unknown logger {name!r}; valid: {', '.join(TRACKERS)}")
    pkg = PACKAGES.get(name)
    if pkg and importlib.util.find_spec(pkg) is None:
        extra = "dev" if name == "tensorboard" else name
        raise ValueError(f"logger={name} needs the {pkg} package: pip install {pkg} (or pip install -e '.[{extra}]')")
    return name


def flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of scalars (``method.lr``), lists and None as strings: what
    TensorBoard's hparams, wandb's and mlflow's params take."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def numbers(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a row (booleans as 0/1), keyed with ``prefix``."""
    out = {}
    for k, v in row.items():
        if isinstance(v, bool):
            out[prefix + k] = float(v)
        elif isinstance(v, (int, float)) and math.isfinite(v):
            out[prefix + k] = float(v)
    return out


SENT = "sent.json"  # in the tracker's folder: its run's id and the last step of each kind it received


class RunTracker:
    """One run's tracker (a no-op for ``logger=none``). Made after the Accelerator, which must have
    been created with :func:`accelerator_kwargs`.

    ``resuming``: the run continues from a saved unlearning state. The rows between that state and
    the kill were already sent (the tracker's store holds them: every row is written through at
    once), and the resumed run computes them again: it continues the same tracker run (MLflow's
    run id, W&B's id; TensorBoard reads every event file in its folder) and leaves out every step
    and trajectory row at or below the last one :data:`SENT` records, and the config, already
    logged. The final summary is logged by every attempt (a failed one reports ``status_ok`` 0)."""

    def __init__(self, acc, logger_cfg: Mapping[str, Any] | None, run_dir: Path, config: Mapping[str, Any],
                 resuming: bool = False):
        self.acc = acc
        self.name = tracker_name(logger_cfg)
        self.on = self.name != "none"
        self.dir = accelerator_kwargs(logger_cfg, run_dir).get("project_dir")  # where it writes
        self.sent: dict[str, int] = {}
        if not self.on:
            return
        cfg = dict(logger_cfg or {})
        prior = self._prior() if resuming else None
        run_id = None
        if prior is not None:
            run_id, self.sent = prior["run_id"], prior["sent"]
        init: dict[str, Any] = {}
        if self.name == "wandb":
            init = {"wandb": {"mode": cfg.get("mode", "offline"), "dir": str(run_dir), "name": cfg.get("run_name"),
                              **({"id": run_id, "resume": "allow"} if run_id else {})}}
        elif self.name == "mlflow":
            init = {"mlflow": {"run_name": cfg.get("run_name"), "run_id": run_id}}
            if self.acc.is_main_process:  # accelerate takes the store from mlflow's global URI
                import mlflow

                mlflow.set_tracking_uri(mlflow_uri(cfg, self.dir))
        self.acc.init_trackers(str(cfg.get("project", "unlearn")), config=None if prior is not None else flat(config),
                               init_kwargs=init)
        self.run_id = self._run_id()
        self._save()

    def _prior(self) -> dict[str, Any] | None:
        """What :data:`SENT` says an earlier attempt of this run sent to this same tracker."""
        path = Path(self.dir) / SENT
        prior = json.loads(path.read_text()) if path.exists() else None
        return prior if prior is not None and prior.get("tracker") == self.name else None

    def _run_id(self) -> str | None:
        if not self.acc.is_main_process or self.name == "tensorboard":
            return None
        run = self.acc.get_tracker(self.name, unwrap=True)
        return run.info.run_id if self.name == "mlflow" else run.id

    def _save(self) -> None:
        if self.acc.is_main_process:
            write_json_atomic(Path(self.dir) / SENT, {"tracker": self.name, "run_id": self.run_id, "sent": self.sent})

    def _log(self, values: dict[str, float], step: int, kind: str | None = None) -> None:
        """``kind``: rows of one kind are sent once per step, over every attempt of the run."""
        if not self.on or (kind is not None and step <= self.sent.get(kind, -1)):
            return
        self.acc.log(values, step=step)
        if kind is not None:
            self.sent[kind] = step
            self._save()

    def step(self, row: Mapping[str, Any]) -> None:
        self._log(numbers(row, "step/"), int(row["step"]), "step")

    def trajectory(self, step: int, summary: Mapping[str, Any]) -> None:
        self._log(numbers(summary, "trajectory/"), int(step), "trajectory")

    def final(self, record: Mapping[str, Any], step: int) -> None:
        if not self.on:
            return
        values: dict[str, float] = {}
        for model, m in (record.get("metrics") or {}).items():
            values.update(numbers(m.get("summary", {}), f"final/{model}/"))
        sel = record.get("selection") or {}
        if sel.get("metrics"):
            values.update(numbers(sel["metrics"], "selected/"))
        values["final/status_ok"] = float(record.get("status") == "ok")
        self._log(values, int(step))

    def close(self) -> None:
        if self.on:
            self.acc.end_training()
            self.on = False


def mlflow_uri(cfg: Mapping[str, Any], folder: str | Path) -> str:
    """``logger.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a file store in ``folder`` (the run's
    tracker folder): never MLflow 3's default, a ``mlflow.db`` in whatever the working directory is."""
    import os

    uri = cfg.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    # MLflow >= 3.7 keeps its file store in maintenance mode behind this opt-in; a per-run file
    # store is what works offline with mlflow-skinny alone (a database store needs SQLAlchemy)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(folder).resolve().as_uri()


def accelerator_kwargs(logger_cfg: Mapping[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    """``log_with`` / ``project_dir`` for the run's Accelerator (nothing for ``logger=none`` or an
    unknown name, which validation then reports)."""
    name = tracker_name(logger_cfg)
    if TRACKERS.get(name) is None or importlib.util.find_spec(PACKAGES[name]) is None:
        return {}
    sub = str((logger_cfg or {}).get("dir", "tracker"))
    return {"log_with": TRACKERS[name], "project_dir": str(Path(run_dir) / sub)}
