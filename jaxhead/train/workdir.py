"""The workdir contract: config.json, checkpoints/, metrics.jsonl, eval.json, samples/.

Re-running a command on an existing workdir resumes that run; a workdir written by a *different*
configuration is never silently overwritten: :func:`prepare_workdir` stops with the differences.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import ml_collections

from jaxhead.files import publish
from jaxhead.train.errors import WorkdirBusyError, WorkdirConflictError
from jaxhead.train.metrics import read_metrics

# Keys that may change when a run is resumed (extending a run, logging or validating more or less
# often or on fewer frames).
RESUMABLE_KEYS = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.sample_every",
    "train.eval_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.hang_dump_s",
    "eval.validate_stride",
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def config_to_json(config: ml_collections.ConfigDict) -> dict:
    """The resolved config as JSON-compatible data (tuples become lists)."""
    return json.loads(config.to_json_best_effort(sort_keys=True))


def write_json_atomic(path: str | pathlib.Path, data: Any) -> None:
    """Writes JSON to a temporary file in the same folder and renames it into place."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    publish(tmp, path)


def config_differences(
    old: dict,
    new: dict,
    ignore: tuple[str, ...] = RESUMABLE_KEYS,
    added: dict[str, Any] | None = None,
) -> list:
    """Keys whose values differ between two resolved configs, ignoring ``ignore``.

    ``added``: keys a stage added to its config after runs existed, with the value their
    absence meant (``{"model.encoding": "frequency"}``): an older run's config without such a key
    matches a new config that holds exactly that value.
    """
    a, b = _flatten(old), _flatten(new)
    for key, meant in (added or {}).items():
        if key not in a and json.loads(json.dumps(meant)) == b.get(key):
            a[key] = b[key]
    keys = sorted(set(a) | set(b))
    return [
        (k, a.get(k, "<absent>"), b.get(k, "<absent>"))
        for k in keys
        if k not in ignore and a.get(k, "<absent>") != b.get(k, "<absent>")
    ]


def prepare_workdir(
    workdir: str | pathlib.Path,
    config: ml_collections.ConfigDict,
    *,
    write: bool = True,
    added: dict[str, Any] | None = None,
) -> bool:
    """Creates ``workdir`` and writes ``config.json``; checks a resumed run's config.

    Args:
      workdir: the run's folder.
      config: the resolved configuration.
      write: whether this process writes (the primary process in a multi-host run).
      added: config keys added after runs existed (:func:`config_differences`).

    Returns:
      True when the workdir already held a run (the caller resumes it).

    Raises:
      WorkdirConflictError: the workdir holds a run with a different configuration.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    new = config_to_json(config)
    existed = path.exists()
    if existed:
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise WorkdirConflictError(
                f"{path} is not valid JSON ({e}); this workdir is damaged: "
                "use a new --workdir or repair the file"
            ) from None
        diffs = config_differences(old, new, added=added)
        if diffs:
            lines = "\n".join(f"  {k}: {a!r} (in the workdir) vs {b!r} (now)" for k, a, b in diffs)
            raise WorkdirConflictError(
                f"{workdir} holds a run made with a different configuration:\n{lines}\n"
                "Re-run with the same config to resume it, or choose a new --workdir."
            )
    if write:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "samples").mkdir(exist_ok=True)
        write_json_atomic(path, new)
    return existed


def check_workdir_path(workdir: str | pathlib.Path) -> pathlib.Path:
    """Checks that ``workdir`` is (or can become) a writable folder; nothing is created.

    Raises:
      WorkdirConflictError: it is a file, or it (or its nearest existing parent) is not writable.
    """
    workdir = pathlib.Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirConflictError(f"--workdir {workdir} is a file, not a folder; choose a folder")
    existing = workdir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WorkdirConflictError(
            f"--workdir {workdir}: {existing} is a file, not a folder; choose another --workdir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirConflictError(
            f"--workdir {workdir}: {existing} is not writable; choose a folder you can write"
        )
    return workdir


LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock_workdir(workdir: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Holds ``workdir/.lock`` while a run writes there; a second run is refused.

    The lock is an ``flock`` on the file, which the kernel releases when its process dies, so the
    lock of a killed run is stale by construction and the next run takes it over. The file also
    records who holds it (pid, host, start time, command) for the refusal message. On filesystems
    without ``flock`` the recorded pid is checked instead (a dead pid on this host is stale).

    Raises:
      WorkdirBusyError: another live process holds the lock.
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusyError(_busy_message(workdir, path)) from None
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            _check_pid_lock(workdir, path)  # no flock here: fall back to the recorded pid
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _read_holder(path).get("pid") == os.getpid():
                os.ftruncate(fd, 0)
        os.close(fd)


def _read_holder(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def _busy_message(workdir: pathlib.Path, path: pathlib.Path) -> str:
    holder = _read_holder(path)
    who = (
        f"process {holder.get('pid')} on {holder.get('host')} (started {holder.get('started')}: "
        f"`{holder.get('command')}`)"
        if holder
        else "another process"
    )
    return (
        f"{workdir} is in use by {who}; two runs in one workdir would overwrite each other. Wait "
        "for it to finish (or stop it; its lock is then taken over), or choose another --workdir"
    )


def _check_pid_lock(workdir: pathlib.Path, path: pathlib.Path) -> None:
    holder = _read_holder(path)
    pid = holder.get("pid")
    if (
        isinstance(pid, int)
        and pid != os.getpid()
        and (holder.get("host") != socket.gethostname() or _alive(pid))
    ):
        raise WorkdirBusyError(_busy_message(workdir, path))


def finished_outputs(workdir: str | pathlib.Path, total_steps: int) -> list[str]:
    """What of a run's results ``workdir`` holds: eval.json, metrics up to the last step.

    A workdir with results but no checkpoint cannot resume; retraining it from step 0 would
    replace them, so :func:`jaxhead.train.loop.train` refuses it.
    """
    workdir = pathlib.Path(workdir)
    found = []
    if (workdir / "eval.json").exists():
        found.append("eval.json")
    records = read_metrics(workdir / "metrics.jsonl")
    if records and int(records[-1].get("step", 0)) >= int(total_steps):
        found.append(f"metrics.jsonl up to step {records[-1]['step']}")
    return found


def read_run_config(
    workdir: str | pathlib.Path, required: tuple[str, ...], kind: str, command: str
) -> ml_collections.ConfigDict:
    """The resolved config of a finished or running run of one stage, checked to be that stage.

    Args:
      workdir: the run folder a user passed (``--workdir``, ``--gpvae_workdir``, ...).
      required: dotted keys only that stage's config has (e.g. ``("finetune", "model.cme_depth")``
        for the GP-VAE), so another stage's run folder is named as such instead of failing deep
        inside the loader.
      kind: the stage in words for the message ("a GP-VAE", "a head-NeRF").
      command: the command that trains one.

    Raises:
      WorkdirConflictError: no config.json, a damaged one, or another stage's run.
    """
    workdir = pathlib.Path(workdir)
    path = workdir / "config.json"
    if not path.is_file():
        raise WorkdirConflictError(
            f"{workdir} is not {kind} run folder (no config.json in it); train one with `{command}`"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WorkdirConflictError(
            f"{path} cannot be read ({e}); the run folder is damaged"
        ) from None
    flat = _flatten(data)
    prefixes = {k.rsplit(".", i)[0] for k in flat for i in range(k.count(".") + 1)}
    missing = [key for key in required if key not in prefixes]
    if missing:
        raise WorkdirConflictError(
            f"{workdir} holds a run of another stage, not {kind} run (its config.json has no "
            f"{', '.join(missing)}); pass {kind} run folder, trained with `{command}`"
        )
    return ml_collections.ConfigDict(data)
