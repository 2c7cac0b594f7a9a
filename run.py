"""Entry point: compose the config with Hydra and run one unlearning experiment (see README)."""
import hydra
from omegaconf import DictConfig

import unlearn.config  # noqa: F401  (registers the resolvers the config uses)
from unlearn.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    from unlearn.pipeline import run
    from unlearn.run_report import conclude

    conclude(run(cfg))


if __name__ == "__main__":
    main()
