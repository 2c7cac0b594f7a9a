"""A folder of debug runs to look at the report with: every figure and table ``python -m eval.report``
draws, on runs made in a few minutes.

    python tests/report_gallery.py OUT              # the runs into OUT/debug/runs, the report into OUT/report
    python tests/report_gallery.py OUT --report     # only the report (after a change to eval/report/)

The runs (``debug=tiny``, 6 steps, trajectory evaluation every step): twelve methods at a fixed
rate of 1e-3 over seeds 0 and 1 (more methods than one color cycle has); GDiff and NGDiff with GeN
from two initial rates (the GeN figure's colors) over two seeds; the README's LoRA
command (an override holding brackets, commas and spaces; GeN moves its rate far); checkpoint
selection with a utility floor (an override holding braces and a colon). Set ``UNLEARN_CACHE`` to
share the debug world's stages between folders (the first run builds them, ~6 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["debug=tiny", "method.epochs=6", "eval.trajectory_every=1"]
RUNS = [
    ["-m", "method=ga,gdiff,ngdiff,kl,gdiff_kl,npo,simnpo,idk,rmu,undial,wga,pcgrad", "scheduler=constant",
     "method.lr=1e-3", "seed=0,1"],
    ["-m", "method=gdiff,ngdiff", "scheduler=gen", "method.lr=1e-4,1e-3", "seed=0,1"],
    ["model.lora={r: 8, alpha: 16, target_modules: [q_proj, v_proj]}"],
    ["eval.select=forget_quality", "eval.select_floor={model_utility_no_rouge: 0.95}"],
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the runs (OUT/debug/runs) and the report (OUT/report)")
    ap.add_argument("--report", action="store_true", help="only regenerate the report from the runs there")
    args = ap.parse_args(argv)
    env = {**os.environ, "UNLEARN_OUTPUTS": str(args.out.resolve())}
    if not args.report:
        for extra in RUNS:
            multi = extra[:1] if extra[0] == "-m" else []
            cmd = [sys.executable, "run.py", *multi, *COMMON, *extra[len(multi):]]
            print("$", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    runs = args.out / "debug" / "runs"
    subprocess.run([sys.executable, "-m", "eval.report", str(runs), "--out", str(args.out / "report")], cwd=ROOT,
                   env=env, check=True)


if __name__ == "__main__":
    main()
