"""Entry point: compose the config with Hydra and run one unlearning experiment (see README)."""
import hydra
from omegaconf import DictConfig

import unlearn.config  # noqa: F401  (registers the resolvers the config uses)
from unlearn.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from unlearn.pipeline import run
    from unlearn.run_report import report_run

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unlearn.sweep_summary import note_job

    record = run(cfg)
    report_run(record)
    note_job(record)
    if record["status"] == "interrupted":  # Ctrl-C: the record says so; a sweep stops here too
        raise SystemExit(130)
    # A failed single run exits non-zero; in a sweep the failure is recorded and the sweep goes on.
    if record["status"] == "failed" and HydraConfig.get().mode == RunMode.RUN:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
