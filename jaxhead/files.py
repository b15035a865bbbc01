"""Publishing files written through a temporary file: the user's usual permissions, atomically.

``tempfile.mkstemp`` creates files with mode 0600 and ``mkdtemp`` folders with 0700, whatever the
user's umask; a file renamed into place from one keeps that mode, so a config.json, a video or a
feature file would be unreadable to the user's group. :func:`publish` gives the temporary file the
mode a plain ``open(path, "w")`` would have (``0666 & ~umask``; folders ``0777 & ~umask``) and then
renames it over ``path``.
"""

from __future__ import annotations

import os
import pathlib
import threading

_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask (read by setting and restoring it, under a lock)."""
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def usual_mode(path: str | os.PathLike) -> None:
    """Sets ``path`` to ``0666 & ~umask`` (a file) or ``0777 & ~umask`` (a folder)."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~umask())


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> pathlib.Path:
    """Gives ``tmp`` the usual permissions and renames it to ``path`` (atomic on one filesystem)."""
    usual_mode(tmp)
    os.replace(tmp, path)
    return pathlib.Path(path)
