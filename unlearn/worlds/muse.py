"""Load MUSE splits from the Hub (``muse-bench/MUSE-News``, ``muse-bench/MUSE-Books``) or from a
local folder in the same layout.

The Hub dataset has one config per evaluation kind, each with named splits (:data:`MUSE_SPLITS`);
its files live at ``<config>/<split>-*.parquet``. A local folder mirrors that: per (config, split)
either those parquet shards (a clone of the Hub repository) or ``<config>/<split>.json``: JSON lines
or a JSON array of rows (what :func:`unlearn.worlds.muse_synth.generate_muse_synth` writes), or, for
the text configs, a JSON array of strings (the ``data/<corpus>/`` folder that the MUSE GitHub
repository's ``load_data.py`` writes; each string becomes a ``text`` row). Parquet wins where both
exist, because the Hub repository also holds stale legacy ``.json`` files next to the parquet shards
its configs point at. The published layouts: ``docs/real_formats.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `datasets` is imported lazily: it is slow to import and only loading needs it.
    import datasets

SOURCES = ("local", "hub")
MUSE_HUB_IDS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}

#: Config -> splits of the evaluation configs, as in ``muse-bench/MUSE-News`` and
#: ``muse-bench/MUSE-Books`` (README ``dataset_info``): what the evaluation and unlearning read.
MUSE_SPLITS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
}

#: The Hub's other configs, text only and not used here, but loadable: ``scal`` / ``sust`` (the
#: scalability / sustainability forget sets, MUSE-News only) and ``train`` (both corpora).
MUSE_EXTRA_SPLITS: dict[str, tuple[str, ...]] = {
    "scal": ("forget_1", "forget_2", "forget_3", "forget_4"),
    "sust": ("forget_1", "forget_2", "forget_3", "forget_4"),
    "train": ("forget", "retain1", "retain2"),
}
_KNOWN_SPLITS = {**MUSE_SPLITS, **MUSE_EXTRA_SPLITS}

#: Required string columns per config (METRICS.md §2: what the metric code reads); the Hub's
#: features are exactly these.
MUSE_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
    "scal": ("text",),
    "sust": ("text",),
    "train": ("text",),
}


def _check_names(config: str, split: str) -> None:
    if config not in _KNOWN_SPLITS:
        raise ValueError(f"unknown MUSE config {config!r}; valid: {', '.join(_KNOWN_SPLITS)}")
    if split not in _KNOWN_SPLITS[config]:
        raise ValueError(
            f"unknown split {split!r} of MUSE config {config!r}; valid: "
            f"{', '.join(_KNOWN_SPLITS[config])}"
        )


def _is_string_array(file: Path) -> bool:
    """Whether ``file`` starts as a JSON array whose first item is a string."""
    with open(file, encoding="utf-8") as f:
        head = f.read(256).lstrip("\ufeff \t\r\n")
    return head.startswith("[") and head[1:].lstrip().startswith('"')


def _available(folder: Path) -> list[str]:
    """``config/split`` names of the data files under ``folder`` (for error messages)."""
    found = set()
    for path in folder.glob("*/*"):
        if path.suffix == ".json":
            found.add(f"{path.parent.name}/{path.stem}")
        elif path.suffix == ".parquet":
            found.add(f"{path.parent.name}/{path.stem.split('-')[0]}")
    return sorted(found)


def load_muse(
    config: str,
    split: str,
    *,
    source: str,
    path: str | Path | None = None,
    hub_id: str = "muse-bench/MUSE-News",
) -> "datasets.Dataset":
    """Load one MUSE (config, split), e.g. ``("knowmem", "forget_qa")``, as a ``datasets.Dataset``.

    ``source="local"`` reads ``<path>/<config>/<split>-*.parquet`` or ``<path>/<config>/<split>.json``;
    ``source="hub"`` calls ``datasets.load_dataset(hub_id, config, split=split)``.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown MUSE source {source!r}; valid: {', '.join(SOURCES)}")
    _check_names(config, split)
    import datasets

    if source == "hub":
        return datasets.load_dataset(hub_id, config, split=split)
    if path is None:
        raise ValueError(
            f"load_muse({config!r}, {split!r}, source='local') needs `path`, the data folder"
        )
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"MUSE data folder {str(folder)!r} does not exist")
    shards = sorted((folder / config).glob(f"{split}-*.parquet"))
    if shards:
        return datasets.load_dataset("parquet", data_files=[str(p) for p in shards], split="train")
    file = folder / config / f"{split}.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"MUSE file {str(file)!r} (or {config}/{split}-*.parquet) not found; available in "
            f"{str(folder)!r}: {', '.join(_available(folder)) or '(none)'}"
        )
    if MUSE_COLUMNS[config] == ("text",) and _is_string_array(file):
        # MUSE's own data/ layout; recent `datasets` versions read it as a "text" column too, but
        # that is not documented behaviour, so it is read here
        with open(file, encoding="utf-8") as f:
            texts = json.load(f)
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(
                f"MUSE file {str(file)!r}: a JSON array must hold only strings or only rows"
            )
        return datasets.Dataset.from_dict({"text": texts})
    return datasets.load_dataset("json", data_files=str(file), split="train")


def validate_muse_rows(ds: "datasets.Dataset", config: str, split: str) -> "datasets.Dataset":
    """Check that ``ds`` (MUSE ``config``/``split``) has the string columns its metric reads.

    Extra columns are allowed. Returns ``ds`` so calls chain; raises ``ValueError`` naming the
    (config, split), the missing column(s) and the columns found.
    """
    _check_names(config, split)
    required = MUSE_COLUMNS[config]
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"MUSE {config}/{split} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"required: {', '.join(required)}; found: {', '.join(ds.column_names) or '(none)'}"
        )
    if len(ds) > 0:
        for column in required:
            value = ds[0][column]
            if not isinstance(value, str):
                raise ValueError(
                    f"MUSE {config}/{split}: column {column!r} must hold strings, got "
                    f"{type(value).__name__} in row 0"
                )
    return ds
