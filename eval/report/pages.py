"""Generated tables put into Markdown pages between their markers, never typed by hand.

A block named NAME (a sweep, ``all``, ``<sweep>:spread``, ``<sweep>:compare``) is the text between
``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; everything outside the markers is kept as is.
The pages are one file (``--readme FILE``) or every ``*.md`` under a folder (``--docs DIR``), where
each block goes to the one page that holds its markers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping


def markers(name: str) -> tuple[str, str]:
    return f"<!-- report:{name} -->", f"<!-- /report:{name} -->"


def update_block(path: Path, name: str, table_md: str) -> None:
    """Put a generated table into a Markdown file between its markers (never typed by hand)."""
    start, end = markers(name)
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} block")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{table_md.rstrip()}\n{end}{tail}")


def page_of(docs: Path, name: str) -> Path | None:
    """The page under ``docs`` (any ``*.md``, recursively) that holds block ``name``'s markers; None
    if none does, an error if several do (which one is meant would be a guess)."""
    start, end = markers(name)
    pages = [p for p in sorted(Path(docs).rglob("*.md")) if start in (text := p.read_text()) and end in text]
    if len(pages) > 1:
        raise ValueError(f"{start} is in {len(pages)} pages under {docs}: {', '.join(map(str, pages))}")
    return pages[0] if pages else None


def write_blocks(blocks: Mapping[str, str], *, readme: Path | None = None, docs: Path | None = None,
                 optional: Iterable[str] = ()) -> list[Path]:
    """Each ``name -> markdown`` block into ``readme`` or into its page under ``docs``; the pages
    written, in order. A block of ``optional`` is skipped where no page holds it; a missing other
    block is an error before any page is written."""
    if (readme is None) == (docs is None):
        raise ValueError("write_blocks takes one of readme= or docs=")
    optional = set(optional)
    targets: dict[str, Path] = {}
    for name in blocks:
        start, _ = markers(name)
        if docs is not None:
            page = page_of(docs, name)
            if page is None and name not in optional:
                raise ValueError(f"no page under {docs} holds {start} (the block of the generated {name} table)")
        else:
            page = readme if name not in optional or start in readme.read_text() else None
        if page is not None:
            targets[name] = page
    for name, page in targets.items():
        update_block(page, name, blocks[name])
    return list(dict.fromkeys(targets.values()))
