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
        if enabled:
            kept = [r for r in read_metrics(self.jsonl) if r.get("step", 0) <= start_step]
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
        self._last_time = time.perf_counter()
        self._last_step = start_step

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict:
        """Writes ``metrics`` for ``step`` (adds ``steps_per_s``); returns the record written."""
        now = time.perf_counter()
        record = {"step": int(step)}
        record.update({k: _to_python(v) for k, v in metrics.items()})
        if step > self._last_step:
            record["steps_per_s"] = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
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
        return record

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
