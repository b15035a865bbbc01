"""The one error class preprocessing stops with (a `jaxhead.data.errors.DatasetError`)."""

from __future__ import annotations

from jaxhead.data.errors import DatasetError


class PreprocessError(DatasetError):
    """Bad input video (not a video, no audio, truncated, no face) or a missing tool."""
