"""Publishing files written through a temporary file: the user's usual permissions, atomically.

``tempfile.mkstemp`` creates files with mode 0600 and ``mkdtemp`` folders with 0700, whatever the
user's umask; a file renamed into place from one keeps that mode, so a config.json, a video or a
feature file would be unreadable to the user's group. :func:`publish` gives the temporary file the
mode a plain ``open(path, "w")`` would have (``0666 & ~umask``; folders ``0777 & ~umask``) and then
renames it over ``path``.

:func:`identity` tells two input files apart without reading them whole.
"""

from __future__ import annotations

import hashlib
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


def identity(path: str | os.PathLike) -> dict:
    """``{"path", "bytes", "head_sha256"}`` of a file: its absolute path, its size and the SHA-256
    of its first MiB. Two inputs are the same when size and digest agree, wherever the file lies
    and whatever its modification time (a copy of the same video is the same input)."""
    path = pathlib.Path(path).expanduser()
    with path.open("rb") as f:
        head = hashlib.sha256(f.read(1 << 20)).hexdigest()
    return {"path": os.fspath(path.resolve()), "bytes": path.stat().st_size, "head_sha256": head}


def same_file(recorded: dict, current: dict) -> bool:
    """Whether a recorded :func:`identity` names the same content as ``current``; a record of an
    older format without the digest compares size and ``mtime`` (what it holds)."""
    keys = ("bytes", "head_sha256") if "head_sha256" in recorded else ("bytes", "mtime")
    return all(recorded.get(k) == current.get(k) for k in keys)
