"""Load WMDP's data from the Hugging Face Hub or from a local folder in the published layouts.

A WMDP run reads four parts (``domain``: ``bio`` | ``cyber``, or a generated world's own name):

============  ==============================================================  =========================================
part          Hub: id, config, split                                          local folder (``dataset.path``)
============  ==============================================================  =========================================
``forget``    bio: ``cais/wmdp-bio-forget-corpus`` (gated), -, ``train``;     ``wmdp-corpora/<domain>-forget-corpus.jsonl``
              cyber: ``cais/wmdp-corpora``, ``cyber-forget-corpus``, ``train``
``retain``    ``wikitext`` (RMU): ``Salesforce/wikitext``,                     ``wikitext/wikitext-2-raw-v1/test-*.parquet``
              ``wikitext-2-raw-v1``, ``test``; ``corpus`` (open-unlearning):
              ``cais/wmdp-corpora``, ``<domain>-retain-corpus``, ``train``     ``wmdp-corpora/<domain>-retain-corpus.jsonl``
``questions`` ``cais/wmdp``, ``wmdp-<domain>``, ``test``                         ``wmdp/wmdp-<domain>/test-*.parquet``
``general``   ``cais/mmlu``, ``all``, ``test``                                   ``mmlu/all/test-*.parquet``
============  ==============================================================  =========================================

The corpora are raw-text documents (a ``text`` column); the question sets hold 4-choice questions
(``question``, ``choices``: 4 strings, ``answer``: the index of the right one; MMLU adds ``subject``).
A local folder holds Hub clones (``hf download --repo-type dataset cais/wmdp --local-dir <path>/wmdp``)
and the corpora as the WMDP authors ship them outside the Hub (``wmdp-corpora.zip``, the folder RMU's
``data/`` and open-unlearning's ``data/wmdp/wmdp-corpora/`` hold; the bio forget corpus comes by
request as ``bio-forget-corpus.jsonl``). Per part, the first of these that exists is read:
``<folder>/<config>/<split>-*.parquet`` (a Hub clone), ``<folder>/<config>/<split>.json`` or
``.jsonl``, ``<folder>/<config>.jsonl`` (the zip's flat files). JSON files hold rows as JSON lines or
one array; a corpus file may hold JSON strings instead, or plain text, one document a line (RMU's
``rmu/utils.py`` reads the cyber corpora's lines as they are). The published layouts:
``docs/real_formats.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # `datasets` is imported lazily: it is slow to import and only loading needs it.
    import datasets

SOURCES = ("local", "hub")
PARTS = ("forget", "retain", "questions", "general")
RETAIN_CORPORA = ("wikitext", "corpus")  # RMU's retain corpus | open-unlearning's (WMDP_retain.yaml)
N_CHOICES = 4
#: The Hub repositories, by the role ``dataset.hub`` names them with.
HUB_IDS = {"questions": "cais/wmdp", "general": "cais/mmlu", "corpora": "cais/wmdp-corpora",
           "bio_forget": "cais/wmdp-bio-forget-corpus", "wikitext": "Salesforce/wikitext"}
#: The question sets of ``cais/wmdp`` (chem has no forget corpus: it cannot be unlearned here).
QUESTION_DOMAINS = ("bio", "cyber", "chem")
WIKITEXT = ("wikitext-2-raw-v1", "test")  # RMU rmu/utils.py: load_dataset("wikitext", "wikitext-2-raw-v1", split="test")
COLUMNS = {"text": ("text",), "questions": ("question", "choices", "answer"),
           "general": ("question", "subject", "choices", "answer")}


@dataclass(frozen=True)
class Part:
    """Where one part lives: on the Hub (``hub``: a key of :data:`HUB_IDS`, config, split) and in a
    local folder (``folder/config/split``); ``schema``: a key of :data:`COLUMNS`."""

    name: str
    hub: str
    config: str | None
    split: str
    folder: str
    local_config: str
    schema: str

    def where(self) -> str:
        return f"{self.folder}/{self.local_config}/{self.split}"


def wmdp_part(part: str, domain: str, retain: str = "wikitext") -> Part:
    """The :class:`Part` a run of ``domain`` reads as ``part``; ``retain``: which retain corpus."""
    if part not in PARTS:
        raise ValueError(f"unknown WMDP part {part!r}; valid: {', '.join(PARTS)}")
    if part == "forget":
        hub, config = ("bio_forget", None) if domain == "bio" else ("corpora", f"{domain}-forget-corpus")
        return Part(part, hub, config, "train", "wmdp-corpora", f"{domain}-forget-corpus", "text")
    if part == "retain":
        if retain not in RETAIN_CORPORA:
            raise ValueError(f"unknown WMDP retain corpus {retain!r}; valid: {', '.join(RETAIN_CORPORA)}")
        if retain == "wikitext":
            return Part(part, "wikitext", WIKITEXT[0], WIKITEXT[1], "wikitext", WIKITEXT[0], "text")
        return Part(part, "corpora", f"{domain}-retain-corpus", "train", "wmdp-corpora", f"{domain}-retain-corpus",
                    "text")
    if part == "questions":
        return Part(part, "questions", f"wmdp-{domain}", "test", "wmdp", f"wmdp-{domain}", "questions")
    return Part(part, "general", "all", "test", "mmlu", "all", "general")


def load_wmdp(part: str, domain: str, *, source: str, path: str | Path | None = None,
              hub_ids: Mapping[str, str] | None = None, retain: str = "wikitext") -> "datasets.Dataset":
    """One part of a WMDP run as a ``datasets.Dataset``, validated (:func:`validate_wmdp_rows`)."""
    if source not in SOURCES:
        raise ValueError(f"unknown WMDP source {source!r}; valid: {', '.join(SOURCES)}")
    p = wmdp_part(part, domain, retain)
    if source == "hub":
        import datasets

        hub_id = {**HUB_IDS, **(hub_ids or {})}[p.hub]
        ds = datasets.load_dataset(hub_id, p.config, split=p.split)
        return validate_wmdp_rows(ds, p, " ".join(x for x in (hub_id, p.config, f"split {p.split}") if x))
    if path is None:
        raise ValueError(f"load_wmdp({part!r}, source='local') needs `path`, the data folder")
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"WMDP data folder {str(folder)!r} does not exist")
    return _load_local(folder, p)


def _candidates(folder: Path, p: Part) -> list[Path]:
    base = folder / p.folder
    return [base / p.local_config / f"{p.split}.json", base / p.local_config / f"{p.split}.jsonl",
            base / f"{p.local_config}.jsonl"]


def _load_local(folder: Path, p: Part) -> "datasets.Dataset":
    import datasets

    shards = sorted((folder / p.folder / p.local_config).glob(f"{p.split}-*.parquet"))
    if shards:
        ds = datasets.load_dataset("parquet", data_files=[str(s) for s in shards], split="train")
        return validate_wmdp_rows(ds, p, str(shards[0].parent / f"{p.split}-*.parquet"))
    file = next((f for f in _candidates(folder, p) if f.is_file()), None)
    if file is None:
        tried = ", ".join(str(f.relative_to(folder)) for f in _candidates(folder, p))
        raise FileNotFoundError(
            f"WMDP {p.name} data not found in {str(folder)!r}: no {p.where()}-*.parquet, {tried}; data files "
            f"there: {', '.join(_available(folder)) or '(none)'}")
    rows = _read_rows(file, text=p.schema == "text")
    _check_rows(rows, p, str(file))
    required = COLUMNS[p.schema]  # extra columns (a corpus's title, doi, ...) are not read: left out
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in required})


def _available(folder: Path) -> list[str]:
    """The data files under ``folder`` (two levels of subfolders), for error messages."""
    found = [f for pattern in ("*/*.json*", "*/*/*.json*", "*/*/*.parquet") for f in folder.glob(pattern)]
    return sorted(str(f.relative_to(folder)) for f in found)


def _read_rows(file: Path, text: bool) -> list[dict[str, Any]]:
    """Rows of a JSON array or JSON-lines file; for a corpus (``text``) also JSON strings or plain
    text lines, each a ``{"text": ...}`` row. A line that is not JSON in a JSON file is an error."""
    content = file.read_text(encoding="utf-8-sig")
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except json.JSONDecodeError as e:
            raise ValueError(f"WMDP file {str(file)!r}: not a JSON array ({e})") from None
        return [_as_row(x, file, i, text) for i, x in enumerate(items)]
    lines = [(n, line) for n, line in enumerate(content.splitlines(), 1) if line.strip()]
    if text and lines and not _is_json(lines[0][1]):
        return [{"text": line} for _, line in lines]  # plain text, one document a line
    rows = []
    for n, line in lines:
        try:
            rows.append(_as_row(json.loads(line), file, n, text, "line"))
        except json.JSONDecodeError as e:
            raise ValueError(f"WMDP file {str(file)!r} line {n}: not JSON ({e})") from None
    return rows


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _as_row(item: Any, file: Path, index: int, text: bool, unit: str = "item") -> dict[str, Any]:
    if isinstance(item, dict):
        return item
    if text and isinstance(item, str):
        return {"text": item}
    want = "an object or a string" if text else "an object"
    raise ValueError(f"WMDP file {str(file)!r} {unit} {index}: expected {want}, got {type(item).__name__}")


def validate_wmdp_rows(ds: "datasets.Dataset", part: Part, where: str) -> "datasets.Dataset":
    """Check every row of ``ds`` against its part's schema; returns ``ds``. One ``ValueError`` line
    names the part, where it was read, the first bad row and what is valid."""
    required = COLUMNS[part.schema]
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(f"WMDP {part.name} ({where}) lacks column(s) {', '.join(map(repr, missing))}; required: "
                         f"{', '.join(required)}; found: {', '.join(ds.column_names) or '(none)'}")
    if len(ds) == 0:
        raise ValueError(f"WMDP {part.name} ({where}) has no rows")
    for column in required:
        for i, value in enumerate(ds[column]):
            problem = _problem(column, value)
            if problem:
                raise ValueError(f"WMDP {part.name} ({where}) row {i}: {problem}")
    return ds


def _check_rows(rows: list[dict[str, Any]], part: Part, where: str) -> None:
    """:func:`validate_wmdp_rows` on rows read from JSON, before they become a table (where a
    mistyped value would fail inside pyarrow instead)."""
    required = COLUMNS[part.schema]
    if not rows:
        raise ValueError(f"WMDP {part.name} ({where}) has no rows")
    for i, row in enumerate(rows):
        missing = [c for c in required if c not in row]
        if missing:
            raise ValueError(f"WMDP {part.name} ({where}) row {i} lacks {', '.join(map(repr, missing))}; required: "
                             f"{', '.join(required)}; found: {', '.join(row) or '(none)'}")
        problem = next((p for p in (_problem(c, row[c]) for c in required) if p), None)
        if problem:
            raise ValueError(f"WMDP {part.name} ({where}) row {i}: {problem}")


def _problem(column: str, value: Any) -> str | None:
    """What is wrong with one value (None: nothing)."""
    if column == "choices":
        if not isinstance(value, (list, tuple)) or len(value) != N_CHOICES or not all(isinstance(c, str) for c in value):
            return f"'choices' must be a list of {N_CHOICES} strings, got {value!r}"
        return None
    if column == "answer":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < N_CHOICES:
            return f"'answer' must be the index of the right choice, an integer 0..{N_CHOICES - 1}, got {value!r}"
        return None
    if not isinstance(value, str):
        return f"{column!r} must be a string, got {type(value).__name__}"
    return None
