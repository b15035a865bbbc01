"""Errors raised on bad dataset input.

Every data reader in jaxhead stops on bad input with ONE exception whose message names the file,
says what is wrong with it, and says how to fix it (usually: which command produces the file).
All of them derive from `DatasetError`, itself a `ValueError`, so callers that only care about
"the data is bad" catch one class, and tests can match the precise subclass.

Build messages with the subclasses' constructors rather than free-form strings so that the
wording stays uniform across readers::

    raise MissingFileError(path, produced_by="scripts/preprocess.py --task audio")
    raise FeatureShapeError(path, got=arr.shape, expected="[N, 16, 29]")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

__all__ = [
    "CorruptFileError",
    "DatasetError",
    "FeatureShapeError",
    "FrameCountError",
    "MissingFileError",
    "MissingFramesError",
    "NonFiniteError",
]


class DatasetError(ValueError):
    """Bad dataset input: a missing, corrupt, mis-shaped or inconsistent file."""

    def __init__(self, path: str | os.PathLike | None, problem: str, fix: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path is not None else ""
        message = f"{where}{problem}"
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)


class MissingFileError(DatasetError):
    """A file (or folder) the configuration needs does not exist."""

    def __init__(self, path: str | os.PathLike, produced_by: str | None = None, why: str = ""):
        problem = "file not found" + (f" ({why})." if why else ".")
        fix = f"create it with {produced_by}." if produced_by else None
        super().__init__(path, problem, fix)


class CorruptFileError(DatasetError):
    """A file exists but cannot be parsed (truncated array, broken JSON, undecodable image)."""

    def __init__(self, path: str | os.PathLike, detail: str, produced_by: str | None = None):
        fix = f"re-create it with {produced_by}." if produced_by else "re-create the file."
        super().__init__(path, f"cannot be read: {detail}.", fix)


class FeatureShapeError(DatasetError):
    """An array has the wrong rank or size for its kind."""

    def __init__(
        self,
        path: str | os.PathLike,
        got: tuple[int, ...],
        expected: str,
        produced_by: str | None = None,
    ):
        fix = f"re-create it with {produced_by}." if produced_by else None
        super().__init__(path, f"has shape {list(got)}, expected {expected}.", fix)


class FrameCountError(DatasetError):
    """Per-frame arrays are shorter than the frame ids that index them."""

    def __init__(self, path: str | os.PathLike, rows: int, needed: int, indexed_by: str):
        super().__init__(
            path,
            f"has {rows} frames but {indexed_by} goes up to {needed - 1} (needs {needed} frames).",
            "the features and the transforms json come from different videos or a cut run; "
            "re-run the preprocessing of this video so both cover every frame.",
        )


class MissingFramesError(DatasetError):
    """Some frames listed in the transforms lack a per-frame file (image, landmarks, ...).

    `missing` maps what is missing (e.g. "landmarks ori_imgs/<img_id>.lms") to the frame ids.
    """

    def __init__(self, path: str | os.PathLike, missing: Mapping[str, Sequence[int]], total: int):
        parts = []
        for kind, ids in missing.items():
            shown = ", ".join(str(i) for i in ids[:10])
            more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
            parts.append(f"{len(ids)} of {total} frames have no {kind} (img_id {shown}{more})")
        super().__init__(
            path,
            "; ".join(parts) + ".",
            "re-run the preprocessing for those frames, or pass missing_frames='drop' to train "
            "on the remaining frames (ids stay the json's img_id; nothing shifts).",
        )


class NonFiniteError(DatasetError):
    """An array holds NaN or infinite values."""

    def __init__(self, path: str | os.PathLike, count: int, first_row: int, fix: str | None = None):
        super().__init__(
            path,
            f"holds {count} non-finite values (first in row {first_row}).",
            fix
            or "re-extract the features; NaN usually means a silent or clipped audio segment "
            "went through a model in reduced precision.",
        )
