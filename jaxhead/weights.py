"""Checking a published state dict against the arrays a Flax port expects (shared by loaders)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np


def _natural(key: str) -> tuple:
    """Sort ``features.10`` after ``features.2``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def state_dict_problems(
    state: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    unexpected_hint: str = "",
) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state`` against ``expected`` shapes.

    Returns one phrase per kind of problem (empty when the state dict fits), for a loader to join
    into its single error message.
    """
    problems = []
    if missing := sorted(set(expected) - set(state), key=_natural):
        problems.append(f"missing keys {missing}")
    if unexpected := sorted(set(state) - set(expected), key=_natural):
        problems.append(f"unexpected keys {unexpected}{unexpected_hint}")
    wrong = [
        f"{key} {tuple(np.shape(state[key]))} (expected {tuple(shape)})"
        for key, shape in expected.items()
        if key in state and tuple(np.shape(state[key])) != tuple(shape)
    ]
    if wrong:
        problems.append("mis-shaped " + ", ".join(wrong))
    return problems
