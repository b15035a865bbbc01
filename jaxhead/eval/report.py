"""Evaluation report: merge results into ``WORKDIR/eval.json`` and write a table to ``eval.md``.

Results are nested dicts of plain values (numbers, strings, lists, ``None``). A metric that could
not be computed is never a number: it is ``None`` — or a dict with a ``None`` value and a
``"reason"`` (what :func:`not_computed` makes, and what :func:`jaxhead.eval.lpips.compute_lpips`
and :func:`jaxhead.eval.fid.compute_fid` return without weights) — and the table shows it as
``not computed: <reason>``.

``eval.json`` keeps what earlier evaluations wrote: new results are merged in recursively (a
nested dict updates the existing one key by key), so re-scoring one split or adding LPIPS later
does not drop the others. ``eval.md`` is rendered from the merged whole.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping
from typing import Any

from jaxhead.train.workdir import write_json_atomic

__all__ = ["not_computed", "merge", "flatten", "format_value", "markdown_table", "write_report"]

JSON_FILE = "eval.json"
MARKDOWN_FILE = "eval.md"


def not_computed(metric: str, reason: str) -> dict:
    """``{metric: None, "reason": reason}``: the record of a metric that was not computed."""
    return {metric: None, "reason": str(reason)}


def _is_not_computed(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and "reason" in value
        and any(v is None for k, v in value.items() if k != "reason")
    )


def merge(old: Mapping, new: Mapping) -> dict:
    """Recursive update: ``new``'s leaves replace ``old``'s; nested dicts merge key by key.

    A not-computed record replaces a whole entry (its stale numbers must not survive beside it),
    and so does a computed result replacing a not-computed record.
    """
    out = dict(old)
    for key, value in new.items():
        previous = out.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(previous, Mapping)
            and not _is_not_computed(value)
            and not _is_not_computed(previous)
        ):
            out[key] = merge(previous, value)
        else:
            out[key] = value
    return out


def flatten(results: Mapping, prefix: str = "") -> list[tuple[str, Any]]:
    """``[(dotted name, value)]`` leaves in insertion order; not-computed records stay whole."""
    rows = []
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not _is_not_computed(value):
            rows.extend(flatten(value, f"{name}."))
        else:
            rows.append((name, value))
    return rows


def format_value(value: Any) -> str:
    """The table cell of one result."""
    if value is None:
        return "not computed"
    if _is_not_computed(value):
        return f"not computed: {value['reason']}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(results: Mapping) -> str:
    """A two-column ``| metric | value |`` table of the flattened results."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {name} | {format_value(value)} |" for name, value in flatten(results)]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """NumPy / JAX scalars and arrays as plain Python values (``json`` rejects them)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return value.tolist()
    return value


def write_report(results: Mapping, workdir, title: str = "Evaluation") -> dict:
    """Merges ``results`` into ``workdir/eval.json`` and writes ``workdir/eval.md``.

    Both files are replaced atomically. Returns the merged results.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / JSON_FILE
    existing = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); move it aside and re-run") from err
    merged = merge(existing, _jsonable(results))
    write_json_atomic(path, merged)
    markdown = f"# {title}\n\n{markdown_table(merged)}\n"
    tmp = workdir / f".{MARKDOWN_FILE}.tmp"
    tmp.write_text(markdown)
    tmp.replace(workdir / MARKDOWN_FILE)
    return merged
