"""``python -m eval.evaluate checkpoint=PATH_OR_HUB_ID [name=LABEL] [out=DIR] [overrides...]``: score a
checkpoint you already have -- one of our runs' ``checkpoint/``, a LoRA adapter folder, another
framework's or a paper's release -- on TOFU or MUSE beside the target and retain models, without
unlearning it; the record and files a run writes (docs/evaluation.md).

Every other argument is a Hydra override of the config ``run.py`` composes (``dataset=``, ``model=``,
``eval.retain_logs=``, ``eval.compat=open_unlearning``, ``eval.ou_logs=true``, ``debug=tiny``, ...);
``method`` and ``scheduler`` are not read. The output goes to ``out=DIR``, else to
``<paths.runs>/evaluate/<dataset>/<split>/<model>/<label>-<hash>/<overrides>``. One checkpoint per
command (no ``-m``).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

OURS = ("checkpoint", "name", "out")  # this command's own keys; the rest are the config's overrides


def split_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(this command's keys, the config's overrides); a multirun flag or a repeated key is an error."""
    ours: dict[str, str] = {}
    overrides = []
    for arg in argv:
        if arg in ("-m", "--multirun"):
            raise ValueError("python -m eval.evaluate evaluates one checkpoint per command: run one command "
                             "per checkpoint (a shell loop), each with its own out= or the default directory")
        key, eq, value = arg.partition("=")
        if eq and key in OURS:
            if key in ours:
                raise ValueError(f"{key}= given twice ({ours[key]!r}, {value!r})")
            ours[key] = value
        else:
            overrides.append(arg)
    return ours, overrides


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    from omegaconf import open_dict

    from unlearn.checkpoint_eval import evaluate_checkpoint, evaluation_dir, locate
    from unlearn.config import compose_config
    from unlearn.run_logs import FORMAT, job_overrides
    from unlearn.run_report import end_job

    try:
        ours, overrides = split_args(argv)
        if not ours.get("checkpoint"):
            locate(None)  # the one-line message of a missing checkpoint
        cfg = compose_config(overrides, return_hydra_config=True)
    except Exception as e:  # noqa: BLE001 - a bad command line (Hydra's parse / compose errors): one line
        raise SystemExit(f"error: {e}") from None
    job = job_overrides(cfg.hydra)
    with open_dict(cfg):
        del cfg["hydra"]
    name = ours.get("name")
    run_dir = (Path(ours["out"]) if ours.get("out") else evaluation_dir(cfg, ours["checkpoint"], name, job["variant"]))
    run_dir = run_dir.absolute()  # as Hydra gives a run's: the record names where it is
    console = logging.StreamHandler(sys.stdout)  # what Hydra's job logging shows a run on the terminal
    console.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(console)
    try:
        record = evaluate_checkpoint(cfg, ours["checkpoint"], run_dir, name, overrides=job)
    finally:
        logging.getLogger().removeHandler(console)
    end_job(record)


if __name__ == "__main__":
    main()
