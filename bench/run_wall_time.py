"""Wall time of the default `python run.py`, cold (empty output folder) then warm (stages cached).

    python bench/run_wall_time.py

Targets (issue 2): cold <= 10 min, warm <= 2 min on 2 CPU cores. Prints both and their ratio.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(env: dict) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "run.py", "overwrite=true"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    with tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "UNLEARN_OUTPUTS": out}
        cold, warm = timed(env), timed(env)
    print(f"python run.py cold: {cold:7.1f} s  (target <= 600 s)")
    print(f"python run.py warm: {warm:7.1f} s  (target <= 120 s)")
    print(f"cold / warm       : {cold / warm:7.1f}x")


if __name__ == "__main__":
    main()
