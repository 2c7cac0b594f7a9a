"""Every command the README, docs/ and the config files' comments show runs as written: each
``run.py`` line (``python run.py``, ``torchrun ... run.py``, ``accelerate launch ... run.py``) composes
with :func:`unlearn.config.compose_config` -- its config groups and options exist, its keys exist or
are legal additions (``+key``), its values have their keys' types (:func:`unlearn.schema.check_overrides`)
-- and a launcher's ``--config_file`` exists. A sweep (``-m a,b``) is checked with its first values;
``...`` and ``<placeholder>`` stand for what the reader fills in."""
from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from unlearn.config import CONFIG_DIR, compose_config
from unlearn.schema import GROUPS, check_overrides

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "conf").rglob("*.yaml")),
         *sorted((ROOT / "sweeps").glob("*.yaml"))]
OVERRIDE = re.compile(r"^(\+{1,2}|~)?[A-Za-z_][\w./@-]*=")
PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def lines_of(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a page, or of a YAML file's comments; a line ending in ``\\``
    continues on the next (its comment mark dropped)."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if path.suffix == ".yaml":
            line = line.split("#", 1)[1] if "#" in line else ""
        if pending is not None:
            n, line = pending[0], pending[1] + " " + line.strip()
        pending = (n, line.rstrip()[:-1]) if line.rstrip().endswith("\\") else None
        if pending is None:
            out.append((n, line))
    return out


def commands() -> dict[tuple[str, ...], str]:
    """Each distinct command's overrides (its launcher flags, as ``--config_file=PATH``, first),
    with where it is first shown."""
    found: dict[tuple[str, ...], str] = {}
    for path in FILES:
        for n, line in lines_of(path):
            if "run.py" not in line:
                continue
            launcher, _, rest = line.partition("run.py")
            rest = re.split(r"&&|`|\s#|\s\|", rest, maxsplit=1)[0]
            config = re.search(r"--config_file[ =](\S+)", launcher.split("`")[-1])
            args = ([f"--config_file={config.group(1)}"] if config else []) + overrides(rest)
            found.setdefault(tuple(args), f"{path.relative_to(ROOT)}:{n}")
    return found


def overrides(text: str) -> list[str]:
    """The overrides at the start of a command's arguments (up to the first word that is none),
    a sweep's first values, placeholders filled."""
    out = []
    for word in shlex.split(PLACEHOLDER.sub("placeholder", text)):
        if word in ("...", "-m", "--multirun"):
            continue
        if not OVERRIDE.match(word):
            break
        o = OverridesParser.create().parse_override(word)
        out.append(f"{o.get_key_element()}={next(o.sweep_string_iterator())}" if o.is_sweep_override() else word)
    return out


@functools.lru_cache(maxsize=None)
def base(groups: tuple[str, ...]):
    return compose_config(list(groups))


def problem(args: tuple[str, ...]) -> str | None:
    files = [a.split("=", 1)[1] for a in args if a.startswith("--config_file=")]
    missing = [f for f in files if not (ROOT / f).is_file()]
    if missing:
        return f"no such file {missing[0]}"
    ovs = [a for a in args if not a.startswith("--")]
    groups = tuple(o for o in ovs if o.split("=", 1)[0].lstrip("+~").split("@")[0] in GROUPS)
    if len(ovs) == 1 and groups == (ovs[0],) and not ovs[0].startswith(("+", "~")):
        group, option = ovs[0].split("=", 1)  # one option: its file (test_config composes every option)
        folder = ROOT / "sweeps" if group == "sweeps" else CONFIG_DIR / group
        return None if (folder / f"{option}.yaml").is_file() else f"no option {option} in {group}/"
    values = [o for o in ovs if o not in groups and not o.lstrip("+~").startswith("hydra")]  # hydra's: Hydra's own
    try:
        cfg = compose_config(ovs)
        if values:
            check_overrides(cfg, values, base(groups))
    except Exception as e:  # noqa: BLE001 - every command's problem, reported together
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def test_the_commands_are_found():
    found = commands()
    assert ("--config_file=conf/accelerate/fsdp.yaml", "experiment=tofu_phi_forget05") in found
    assert ("dataset=muse", "model=hf", "model.target=muse-bench/MUSE-news_target",  # a comment over two lines
            "model.retain=muse-bench/MUSE-news_retrain", "model.tokenizer=meta-llama/Llama-2-7b-hf") in found
    assert ("method=ga", "seed=0") in found  # -m method=ga,gdiff,ngdiff seed=0,1
    assert ("sweeps=smoke", "hydra/launcher=local_parallel", "threads=1") in found
    assert len(found) >= 40


def test_every_documented_command_composes():
    bad = [f"{where}: run.py {' '.join(args)}: {p}" for args, where in commands().items() if (p := problem(args))]
    assert not bad, "commands in the docs that do not run as written:\n" + "\n".join(bad)


def test_a_wrong_key_is_caught():
    assert problem(("model=hf", "model.path=placeholder")).startswith("ConfigCompositionException")
    assert problem(("+method.lrr=1",)).startswith("ConfigError: unknown config key method.lrr")
    assert problem(("--config_file=conf/accelerate/none.yaml", "debug=tiny")) == "no such file conf/accelerate/none.yaml"
    assert problem(("method=nope",)) == "no option nope in method/"
    assert problem(("method=nope", "seed=1")).startswith("MissingConfigException")
