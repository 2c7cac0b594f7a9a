"""Load MUSE splits from the Hub (``muse-bench/MUSE-News``, ``muse-bench/MUSE-Books``) or from a
local folder in the same layout.

The Hub dataset has one config per evaluation kind, each with named splits (:data:`MUSE_SPLITS`);
its files live at ``<config>/<split>-*.parquet``. A local folder mirrors that: per (config, split)
either those parquet shards (a clone of the Hub repository) or ``<config>/<split>.json`` (JSON lines
or a JSON array: the MUSE GitHub repository's ``data/<corpus>/`` layout and what
:func:`unlearn.worlds.muse_synth.generate_muse_synth` writes). Parquet wins where both exist, because
the Hub repository also holds stale legacy ``.json`` files next to the parquet shards its configs
point at.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `datasets` is imported lazily: it is slow to import and only loading needs it.
    import datasets

SOURCES = ("local", "hub")
MUSE_HUB_IDS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}

#: Config -> splits, as in ``muse-bench/MUSE-News`` (README ``dataset_info``). The Hub also has
#: ``scal`` / ``sust`` (scalability / sustainability forget sets); they are not used here.
MUSE_SPLITS: dict[str, tuple[str, ...]] = {
    "raw": ("forget", "retain1", "retain2", "holdout"),
    "verbmem": ("forget",),
    "knowmem": ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl"),
    "privleak": ("forget", "retain", "holdout"),
}

#: Required string columns per config (METRICS.md §2: what the metric code reads).
MUSE_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
}


def _check_names(config: str, split: str) -> None:
    if config not in MUSE_SPLITS:
        raise ValueError(f"unknown MUSE config {config!r}; valid: {', '.join(MUSE_SPLITS)}")
    if split not in MUSE_SPLITS[config]:
        raise ValueError(
            f"unknown split {split!r} of MUSE config {config!r}; valid: "
            f"{', '.join(MUSE_SPLITS[config])}"
        )


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
