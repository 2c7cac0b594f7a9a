"""Load TOFU splits from the Hub (``locuslab/TOFU``) or from a local folder in the same layout.

A local folder holds one file per HF config name (``forget05.json``, ``retain95.json``,
``forget05_perturbed.json``, ...), JSON lines as in the real repository (a JSON array also loads).
The embedded world written by :func:`unlearn.worlds.tofu_synth.generate_tofu_synth` is such a
folder, so both worlds go through :func:`load_tofu`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `datasets` is imported lazily: it is slow to import and only loading needs it.
    import datasets

FORGET_TO_RETAIN = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}
SOURCES = ("local", "hub")

# Columns the code reads, per kind of TOFU file (the published columns: docs/real_formats.md).
# Every file has `question` / `answer`. The truth ratio (METRICS.md §1.1) needs a list-valued
# `perturbed_answer` in every `*_perturbed` file, and, in the fictitious-author ones
# (`forgetXX_perturbed`, `retain_perturbed`), the base answer `paraphrased_answer`. The real
# authors / world facts files have no `paraphrased_answer`: their base answer is `answer`.
# Extra columns (`paraphrased_question`, ...) are allowed.
QA_COLUMNS = ("question", "answer")
PERTURBED_COLUMNS = QA_COLUMNS + ("paraphrased_answer", "perturbed_answer")
REAL_PERTURBED_COLUMNS = QA_COLUMNS + ("perturbed_answer",)
REAL_PERTURBED_FILES = ("real_authors_perturbed", "world_facts_perturbed")


def retain_split_for(forget_split: str) -> str:
    """The retain split that complements a TOFU forget split: ``"forget05" -> "retain95"``."""
    try:
        return FORGET_TO_RETAIN[forget_split]
    except KeyError:
        raise ValueError(
            f"unknown TOFU forget split {forget_split!r}; valid: {', '.join(FORGET_TO_RETAIN)}"
        ) from None


def load_tofu(
    name: str, *, source: str, path: str | Path | None = None, hub_id: str = "locuslab/TOFU"
) -> "datasets.Dataset":
    """Load one TOFU config (``"forget05"``, ``"retain_perturbed"``, ...) as a ``datasets.Dataset``.

    ``source="local"`` reads ``<path>/<name>.json``; ``source="hub"`` reads config ``name`` of the
    ``hub_id`` dataset repository.
    """
    import datasets

    if source == "local":
        if path is None:
            raise ValueError(f"load_tofu({name!r}, source='local') needs `path`, the data folder")
        folder = Path(path)
        if not folder.is_dir():
            raise FileNotFoundError(f"TOFU data folder {str(folder)!r} does not exist")
        file = folder / f"{name}.json"
        if not file.is_file():
            available = sorted(p.stem for p in folder.glob("*.json") if p.stem != "manifest")
            raise FileNotFoundError(
                f"TOFU file {str(file)!r} not found; available in {str(folder)!r}: "
                f"{', '.join(available) or '(none)'}"
            )
        return datasets.load_dataset("json", data_files=str(file), split="train")
    if source == "hub":
        return datasets.load_dataset(hub_id, name, split="train")
    raise ValueError(f"unknown TOFU source {source!r}; valid: {', '.join(SOURCES)}")


def required_columns(name: str) -> tuple[str, ...]:
    """The columns :func:`validate_tofu_rows` requires in TOFU file ``name``."""
    if name in REAL_PERTURBED_FILES:
        return REAL_PERTURBED_COLUMNS
    return PERTURBED_COLUMNS if name.endswith("_perturbed") else QA_COLUMNS


def validate_tofu_rows(ds: "datasets.Dataset", name: str) -> "datasets.Dataset":
    """Check that ``ds`` (loaded from TOFU file ``name``) has the columns its kind of file needs.

    ``*_perturbed`` files also need a list-valued ``perturbed_answer``, and all but
    ``real_authors_perturbed`` / ``world_facts_perturbed`` a ``paraphrased_answer``
    (:func:`required_columns`). Returns ``ds`` so calls chain; raises ``ValueError`` naming the
    file and the column.
    """
    required = required_columns(name)
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"TOFU file {name!r} lacks column(s) {', '.join(repr(c) for c in missing)}; "
            f"required: {', '.join(required)}; found: {', '.join(ds.column_names)}"
        )
    if "perturbed_answer" in required and len(ds) > 0:
        first = ds[0]["perturbed_answer"]
        if not (isinstance(first, list) and all(isinstance(x, str) for x in first)):
            raise ValueError(
                f"TOFU file {name!r}: column 'perturbed_answer' must be a list of strings, "
                f"got {type(first).__name__} in row 0"
            )
    return ds
