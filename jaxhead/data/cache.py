"""The one folder where generated datasets and rendered frames are cached, and the one way
arrays are written into it (atomically: a reader never sees half a file)."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np

from jaxhead.files import publish


def cache_root(cache_dir: str = "") -> pathlib.Path:
    """``cache_dir`` if given, else ``$JAXHEAD_CACHE``, else ``$XDG_CACHE_HOME/jaxhead``
    (``~/.cache/jaxhead``)."""
    if cache_dir:
        return pathlib.Path(cache_dir).expanduser()
    if os.environ.get("JAXHEAD_CACHE"):
        return pathlib.Path(os.environ["JAXHEAD_CACHE"]).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "jaxhead"


def save_npz(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = False
) -> pathlib.Path:
    """Writes ``arrays`` to ``path`` as ``.npz`` (deflated with ``compress``) through a temporary
    file in the same folder and a rename, so a killed writer leaves either the old file or none,
    never a partial one."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        publish(tmp, path)  # mkstemp's 0600 becomes the user's usual file mode
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path
