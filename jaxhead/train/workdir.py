"""The workdir contract: config.json, checkpoints/, metrics.jsonl, eval.json, samples/.

Re-running a command on an existing workdir resumes that run; a workdir written by a *different*
configuration is never silently overwritten: :func:`prepare_workdir` stops with the differences.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import ml_collections

# Keys that may change when a run is resumed (extending a run, logging more or less often).
RESUMABLE_KEYS = (
    "train.steps",
    "train.log_every",
    "train.checkpoint_every",
    "train.sample_every",
    "train.eval_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.hang_dump_s",
)


class WorkdirConflictError(RuntimeError):
    """The workdir holds a run made with another configuration."""


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
    os.replace(tmp, path)


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
