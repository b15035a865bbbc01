"""Metrics writing: ``metrics.jsonl`` for machines, ``train.log`` for people, a progress bar."""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tqdm


def _to_python(value: Any) -> Any:
    value = np.asarray(value)
    if value.ndim == 0:
        return value.item()
    return value.tolist()


def read_metrics(path: str | pathlib.Path) -> list[dict]:
    """Reads a ``metrics.jsonl`` file (one JSON object per logged step)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a killed run: everything after it is unreliable
    return records


class MetricsWriter:
    """Appends one JSON object per logged step to ``metrics.jsonl`` and a line to ``train.log``.

    Only the primary process writes. On resume from step ``s`` the records after ``s`` (written by
    the killed run after its last checkpoint) are dropped, so the file always describes the run
    that the checkpoints continue.

    Every record carries ``train_time_s``: the wall-clock seconds the run has spent training up to
    that step (compilation, data and checkpointing included; periodic validation, reported with
    :meth:`exclude`, left out), continued across resumes from the last kept record: the x axis
    of a time-to-quality curve.
    """

    def __init__(
        self,
        workdir: str | pathlib.Path,
        *,
        total_steps: int,
        start_step: int = 0,
        enabled: bool = True,
        progress: bool = True,
        desc: str = "train",
    ):
        self.workdir = pathlib.Path(workdir)
        self.enabled = enabled
        self.jsonl = self.workdir / "metrics.jsonl"
        self.log = self.workdir / "train.log"
        kept = [r for r in read_metrics(self.jsonl) if r.get("step", 0) <= start_step]
        times = [r["train_time_s"] for r in kept if "train_time_s" in r]
        self._time_offset = float(times[-1]) if times else 0.0
        if enabled:
            tmp = self.jsonl.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.jsonl)
        self._bar = (
            tqdm.tqdm(
                total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True, leave=True
            )
            if enabled and progress
            else None
        )
        self._last_time = self._start_time = time.perf_counter()
        self._excluded = 0.0
        self._last_step = start_step

    def exclude(self, seconds: float) -> None:
        """Leaves ``seconds`` (e.g. a periodic validation) out of ``train_time_s`` and out of the
        next ``steps_per_s``."""
        self._excluded += seconds
        self._last_time += seconds

    def train_time(self) -> float:
        """``train_time_s`` now."""
        return self._time_offset + time.perf_counter() - self._start_time - self._excluded

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
        """Writes ``metrics`` for ``step`` (adds ``steps_per_s`` and ``train_time_s``); returns the
        record written."""
        now = time.perf_counter()
        record = {"step": int(step)}
        record.update({k: _to_python(v) for k, v in metrics.items()})
        if step > self._last_step:
            record["steps_per_s"] = (step - self._last_step) / max(now - self._last_time, 1e-9)
            self._last_time, self._last_step = now, step
        record["train_time_s"] = self._time_offset + now - self._start_time - self._excluded
        self._append(record)
        return record

    def write_record(self, record: Mapping[str, Any]) -> dict:
        """Writes a record of other scores for a step (a validation; adds ``train_time_s``)."""
        record = {k: _to_python(v) for k, v in record.items()}
        record["train_time_s"] = self.train_time()
        self._append(record)
        return record

    def _append(self, record: dict) -> None:
        if self.enabled:
            with self.jsonl.open("a") as f:
                f.write(json.dumps(record) + "\n")
            text = " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items()
                if np.ndim(v) == 0
            )
            with self.log.open("a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            if self._bar is not None:
                shown = {
                    k: f"{v:.4g}"
                    for k, v in record.items()
                    if k in ("loss", "psnr") and isinstance(v, float) and math.isfinite(v)
                }
                self._bar.set_postfix(shown, refresh=False)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
