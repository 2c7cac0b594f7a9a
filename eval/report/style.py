"""How every figure of a report tells runs apart, the same way in each:

* a **series** is one (method, scheduler, variant) -- its runs over seeds are averaged. Its label is
  ``method+scheduler``, then a short variant id (``v1``, ``v2``, ...) when its overrides differ from
  those every plotted run shares. The ids are built from each run's override list (never read back
  from a label or a directory name), so any override value works; the **key** (``v1: method.lr=0.001,
  model.lora={r: 8, ...}``, and the overrides all runs share) closes every figure's legend and is
  written beside the figures as ``variants.md``;
* **color**: the method and variant (one color per pair, from a palette sized to their number:
  :func:`distinct_colors`);
* **line style and marker**: the scheduler (constant solid with circles, GeN dashed with squares, the
  others in turn), in every figure;
* the **reference models** (target, retain): large hollow black marks drawn beneath the methods and
  named on the plot.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

Items = tuple[tuple[str, str], ...]  # a variant's overrides: (key, value) pairs in key order

# the usual schedulers keep their look in every report; others take the next free one
KNOWN_SCHEDULERS = {"constant": ("-", "o"), "gen": ("--", "s")}
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P", "<", ">", "h"]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> CIE L*a*b* (D65), where Euclidean distance follows what eyes tell apart."""
    c = np.asarray(rgb, dtype=float)[..., :3]
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def distinct_colors(n: int) -> list[tuple[float, ...]]:
    """n colors, no two alike, the palette sized to n: tab10's first n while n <= 10; beyond, after
    tab10's ten, each next color the candidate (a grid of saturated and darker hues) farthest in
    CIELAB from every color chosen so far."""
    import matplotlib
    from matplotlib.colors import hsv_to_rgb

    chosen = [tuple(matplotlib.colormaps["tab10"](i)) for i in range(10)]
    if n <= 10:
        return chosen[:n]
    grid = [(h / 48, s, v) for h in range(48) for s, v in ((1.0, 0.85), (0.6, 0.95), (1.0, 0.55), (0.55, 0.7))]
    cand = np.array([hsv_to_rgb(g) for g in grid])
    cand_lab, dist = _lab(cand), np.full(len(cand), np.inf)
    for c in chosen:
        dist = np.minimum(dist, np.linalg.norm(cand_lab - _lab(np.array(c)), axis=1))
    while len(chosen) < n:
        i = int(np.argmax(dist))
        chosen.append((*map(float, cand[i]), 1.0))
        dist = np.minimum(dist, np.linalg.norm(cand_lab - cand_lab[i], axis=1))
    return chosen


def scheduler_styles(names: Iterable[str]) -> dict[str, tuple[Any, str]]:
    """scheduler -> (line style, marker): constant and GeN fixed, the others in sorted order."""
    out = {k: v for k, v in KNOWN_SCHEDULERS.items()}
    free = [(ls, mk) for ls, mk in zip(LINESTYLES, MARKERS) if (ls, mk) not in out.values()]
    for i, name in enumerate(sorted(set(names) - set(out))):
        out[name] = free[i % len(free)]
    return out


def _text(items: Items) -> str:
    return ", ".join(f"{k}={v}" for k, v in items)


@dataclass
class Styles:
    """The labels, colors, line styles and variant key of one report's figures (see the module doc)."""

    common: Items
    ids: dict[Items, str]  # a variant's own overrides (less the common ones) -> v1, v2, ...
    colors: dict[tuple[str, str], Any]  # (method, variant id) -> color
    schedulers: dict[str, tuple[Any, str]]
    extra: dict[Items, str] = field(default_factory=dict)  # ids handed out later (a figure's own grouping)

    @classmethod
    def build(cls, un: pd.DataFrame) -> "Styles":
        """From the runs (``method``, ``scheduler``, ``variant_items`` columns)."""
        common = common_items(list(un["variant_items"]))
        own = sorted({cls._own(v, common) for v in un["variant_items"]}, key=lambda o: (len(o), o))
        ids = {items: f"v{i}" for i, items in enumerate([o for o in own if o], start=1)}
        ids[()] = ""
        pairs = sorted({(m, ids[cls._own(v, common)]) for m, v in zip(un["method"], un["variant_items"])})
        colors = dict(zip(pairs, distinct_colors(len(pairs))))
        return cls(common, ids, colors, scheduler_styles(un["scheduler"]))

    @staticmethod
    def _own(items: Items, common: Items) -> Items:
        return tuple(sorted(set(items) - set(common)))

    def variant_id(self, items: Items) -> str:
        """The id of a variant (its overrides less the common ones); one not seen yet gets the next id."""
        own = self._own(items, self.common)
        if own in self.ids:
            return self.ids[own]
        if own not in self.extra:
            self.extra[own] = f"v{len(self.ids) + len(self.extra)}"
        return self.extra[own]

    def label(self, method: str, scheduler: str, items: Items) -> str:
        vid = self.variant_id(items)
        name = "+".join(str(p) for p in (method, scheduler) if isinstance(p, str) and p)  # an evaluation: no scheduler
        return name + (f" {vid}" if vid else "")

    def color(self, method: str, items: Items) -> Any:
        return self.colors.get((method, self.variant_id(items)), "0.3")

    def line(self, scheduler: str) -> Any:
        return self.schedulers.get(scheduler, ("-", "o"))[0]

    def marker(self, scheduler: str) -> str:
        return self.schedulers.get(scheduler, ("-", "o"))[1]

    def key(self) -> list[tuple[str, str]]:
        """(id, overrides) for every variant id handed out, then ('all runs', the shared overrides)."""
        rows = sorted(((v, _text(k)) for k, v in {**self.ids, **self.extra}.items() if v), key=lambda r: int(r[0][1:]))
        return rows + ([("all runs", _text(self.common))] if self.common else [])

    def key_markdown(self) -> str:
        rows = self.key()
        if not rows:
            return "All plotted runs have the same overrides.\n"
        return "| variant | overrides |\n|---|---|\n" + "\n".join(
            f"| {v} | `{t}` |" for v, t in rows) + "\n"


def finish(fig, axes: Sequence[Any], title: str, styles: Styles, extra: Sequence[tuple[Any, str]] = ()) -> None:
    """One legend right of the panels, each label once (whichever panel has it) then ``extra``
    (handle, text) pairs, in as many columns as the figure's height needs; the variant key in a block
    of text under the panels."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    handles, labels = list(seen.values()) + [h for h, _ in extra], list(seen) + [t for _, t in extra]
    if handles:
        per_column = max(6, int(fig.get_figheight() / 0.2))  # 7-point entries
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False,
                   ncol=-(-len(handles) // per_column), handlelength=2.6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    width = max(60, int(fig.get_figwidth() * 14))
    key = [textwrap.fill(f"{vid}: {text}", width, subsequent_indent="      ") for vid, text in styles.key()]
    if key:
        fig.text(0.01, -0.01, "\n".join(key), ha="left", va="top", fontsize=7, family="monospace")


def variant_ids(un: pd.DataFrame, styles: Styles) -> dict[str, str]:
    """Each run's variant (its override string, the tables' ``variant``) -> its short id ('' for the
    overrides every run shares)."""
    return {v: styles.variant_id(items) for v, items in zip(un["variant"], un["variant_items"])
            if isinstance(items, tuple)}


def common_items(variants: Sequence[Items]) -> Items:
    """The overrides every one of ``variants`` has, with the same value."""
    dicts = [dict(v) for v in variants]
    return tuple(sorted((k, v) for k, v in (dicts[0] if dicts else {}).items() if all(d.get(k) == v for d in dicts)))


def seeds_phrase(ns: Iterable[int]) -> str:
    """'n = 2 seeds', 'n = 1-3 seeds': how many runs each mark averages."""
    ns = sorted(set(int(n) for n in ns)) or [0]
    n = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"n = {n} seed" + ("" if ns == [1] else "s")
