"""A folder in WMDP's published layouts, written by the tests that read it (small: two rows a part)."""
from __future__ import annotations

import json
from pathlib import Path

QUESTION = {"question": "Which of these is a prime number?", "choices": ["4", "6", "7", "9"], "answer": 2}
MMLU = {**QUESTION, "subject": "elementary_mathematics"}


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_parquet(path: Path, rows, class_label: bool = False) -> None:
    """A Hub shard: MMLU's ``answer`` is a ClassLabel A-D there (ints once loaded), WMDP's an int64."""
    import datasets

    features = None
    if class_label:
        features = datasets.Features({"question": datasets.Value("string"), "subject": datasets.Value("string"),
                                      "choices": datasets.Sequence(datasets.Value("string")),
                                      "answer": datasets.ClassLabel(names=["A", "B", "C", "D"])})
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(list(rows), features=features).to_parquet(str(path))


def write_real_layout(root: Path) -> Path:
    """A folder in the published layouts: the corpora as the WMDP zip ships them (bio forget as JSON
    rows with extra fields, cyber as plain lines), Hub clones of cais/wmdp, cais/mmlu and WikiText."""
    write_jsonl(root / "wmdp-corpora/bio-forget-corpus.jsonl",
                [{"title": "A paper", "abstract": "...", "text": "First forget document.", "doi": "10.0/x"},
                 {"title": "B", "abstract": "", "text": "Second forget document.", "doi": ""}])
    (root / "wmdp-corpora/cyber-forget-corpus.jsonl").write_text("plain line one\nplain line two\n")
    write_jsonl(root / "wmdp-corpora/cyber-retain-corpus.jsonl", ["a JSON string document", "another"])
    write_parquet(root / "wmdp/wmdp-bio/test-00000-of-00001.parquet", [QUESTION, {**QUESTION, "answer": 0}])
    write_parquet(root / "mmlu/all/test-00000-of-00001.parquet", [MMLU, {**MMLU, "answer": 3}], class_label=True)
    write_parquet(root / "wikitext/wikitext-2-raw-v1/test-00000-of-00001.parquet",
                  [{"text": ""}, {"text": " = Heading = \n"}, {"text": "A paragraph.\n"}])
    return root
