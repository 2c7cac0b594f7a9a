"""Where a run's messages go: ``<run>/run.log`` (Hydra's, or ours outside Hydra), tracebacks into
it and not onto the terminal, the libraries' progress bars off; what Hydra says about the job."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

RUN_LOG = "run.log"
FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def job_overrides(hc: Any = None) -> dict[str, Any] | None:
    """Under Hydra: the command line's overrides (``task``), those that name the run's directory
    (``variant``, Hydra's override_dirname, which ``conf/config.yaml``'s ``tag`` resolver shortens
    past a length) and the config groups' choices; None outside Hydra. ``hc``: the ``hydra`` node
    of a config composed with ``return_hydra_config`` instead of the running app's."""
    from hydra.core.hydra_config import HydraConfig

    if hc is None:
        if not HydraConfig.initialized():
            return None
        hc = HydraConfig.get()
    return {"task": list(hc.overrides.task), "variant": hc.job.override_dirname,
            "choices": {g: c for g, c in hc.runtime.choices.items() if not g.startswith("hydra")}}


def resolve_run_dir(run_dir: str | Path | None) -> Path:
    if run_dir is not None:
        return Path(run_dir)
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        raise ValueError("run() outside a Hydra app needs run_dir")
    return Path(HydraConfig.get().runtime.output_dir)


def attach_log_file(run_dir: Path) -> logging.Handler | None:
    """Hydra already logs to <run_dir>/run.log; outside Hydra (tests, notebooks) we do it."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return None
    handler = logging.FileHandler(run_dir / RUN_LOG)
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()


def log_file_only(run_dir: Path | None, text: str, level: int = logging.ERROR) -> None:
    """Into ``run.log`` and not onto the terminal (a traceback: the terminal gets one line; the
    record's path: the terminal's report names it once)."""
    if run_dir is None:
        return
    logger = logging.getLogger("unlearn.trace")
    logger.propagate = False
    handler = logging.FileHandler(run_dir / RUN_LOG)
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    try:
        logger.log(level, text)
    finally:
        logger.removeHandler(handler)
        handler.close()


def quiet_libraries() -> None:
    """Our own progress bars carry the losses; the libraries' per-file bars only add noise."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_warning()
