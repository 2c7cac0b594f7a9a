"""Measure every time the README states, the way a user meets it.

    python bench/readme_times.py                    # the quick ones: debug=tiny, default run cold + warm
    python bench/readme_times.py fast_suite muse    # by name; `all` runs every one (the slow tier: an hour)

Each claim below is one sentence of the README (``tests/test_docs.py`` checks that every time the
README states is one of these claims, with the same number). A claim's command runs in a fresh
process with fresh output and cache folders (so a "cold" run builds everything), and the script
prints the measured time beside the stated one and whether it holds (measured <= 1.25 x stated;
"in seconds": under a minute). Run it on a quiet machine: next to other load, times stretch.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLACK = 1.25


@dataclass(frozen=True)
class Claim:
    name: str
    command: tuple[str, ...]
    stated_s: float  # what the README says, in seconds
    phrase: str  # how the README says it (tests/test_docs.py finds it there)
    warm: bool = False  # run after the cold one of the same command, in the same folders
    quick: bool = False  # part of the default selection


PY = sys.executable
CLAIMS = (
    Claim("tiny", (PY, "run.py", "debug=tiny"), 60, "in seconds", quick=True),
    # measured quiet on 2 cores: debug=tiny 28 s, default cold 986 s, warm 38 s
    Claim("default_cold", (PY, "run.py"), 16 * 60, "about 16 minutes", quick=True),
    Claim("default_warm", (PY, "run.py", "overwrite=true"), 40, "about 40 seconds", warm=True, quick=True),
    # measured quiet: 1565 s (the target and retrain models train about 14 min each)
    Claim("muse", (PY, "run.py", "dataset=muse_synth"), 30 * 60, "about 30 minutes"),
    # measured (first job of a sweep, quiet but for the sweep): 177 s (world, tokenizer, target, retain: 154 s)
    Claim("wmdp", (PY, "run.py", "dataset=wmdp_synth", "method=rmu"), 3 * 60, "about 3 minutes"),
    # measured quiet: 4 min 50 s (289.6 s; 9.2 CPU-min over the 2 processes)
    Claim("fast_suite", (PY, "-m", "pytest", "-q"), 5 * 60, "about 5 minutes"),
    Claim("slow_tier", (PY, "-m", "pytest", "-q", "-m", "slow", "-n", "0"), 60 * 60, "about an hour"),
)


def timed(command: tuple[str, ...], env: dict[str, str]) -> tuple[float, int]:
    t = time.perf_counter()
    rc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t, rc


def measure(claims: list[Claim]) -> list[tuple[Claim, float, int]]:
    """Each cold claim in its own fresh folders; a warm one reuses the folders of the claim before it."""
    out, env = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(claims):
            if not c.warm or env is None:
                root = Path(tmp) / str(i)
                env = {**os.environ, "UNLEARN_OUTPUTS": str(root), "UNLEARN_CACHE": str(root / "cache")}
            print(f"{c.name}: {' '.join(c.command[1:])} ...", flush=True)
            seconds, rc = timed(c.command, env)
            out.append((c, seconds, rc))
    return out


def holds(c: Claim, seconds: float, rc: int) -> bool:
    return rc == 0 and seconds <= SLACK * c.stated_s


def main(argv: list[str] | None = None) -> int:
    names = {c.name: c for c in CLAIMS}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"claims to measure: {', '.join(names)}, or all (default: the quick ones)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in names and n != "all"]
    if unknown:
        ap.error(f"unknown claim(s) {', '.join(unknown)}; valid: {', '.join(names)}, all")
    chosen = [c for c in CLAIMS if ("all" in args.names or c.name in args.names or (not args.names and c.quick))]
    if any(c.warm for c in chosen) and not any(c.name == "default_cold" for c in chosen):
        chosen.insert(0, names["default_cold"])  # a warm run needs its cold one first
    results = measure(chosen)
    print(f"\n{'claim':14s} {'README says':>18s} {'measured':>10s}  holds")
    for c, seconds, rc in results:
        mark = "yes" if holds(c, seconds, rc) else ("FAILED (exit %d)" % rc if rc else "NO")
        print(f"{c.name:14s} {c.phrase:>18s} {seconds:8.0f} s  {mark}")
    print(f"(holds: exit 0 and at most {SLACK} x the stated time; measured with {os.cpu_count()} CPUs"
          f" and load average {os.getloadavg()[0]:.1f} at the end)")
    return 0 if all(holds(*r) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
