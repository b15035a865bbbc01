"""The one folder where generated datasets and rendered frames are cached."""

from __future__ import annotations

import os
import pathlib


def cache_root(cache_dir: str = "") -> pathlib.Path:
    """``cache_dir`` if given, else ``$JAXHEAD_CACHE``, else ``$XDG_CACHE_HOME/jaxhead``
    (``~/.cache/jaxhead``)."""
    if cache_dir:
        return pathlib.Path(cache_dir).expanduser()
    if os.environ.get("JAXHEAD_CACHE"):
        return pathlib.Path(os.environ["JAXHEAD_CACHE"]).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "jaxhead"
