"""Range checks of config values, run when a stage reads its config (before any work).

A config holds data only; its types are checked by ``ml_collections`` when a value is overridden,
its ranges here. The shared blocks (``train``, ``optim``) are checked key by key; every other block
by the conventions of its key names (``*_size`` and ``batch_size`` positive, ``*fraction`` and
``*dropout`` within [0, 1], ``*learning_rate`` and ``*temperature`` positive, ``*_steps`` not
negative, every other number of a ``loss`` block (a term's weight) not negative, no NaN anywhere),
so a new stage's config is checked without a line of code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import ml_collections

Check = tuple[Callable[[Any], bool], str]

_POSITIVE_INT: Check = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_NON_NEGATIVE_INT: Check = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_POSITIVE: Check = (lambda v: _is_number(v) and v > 0, "a finite number > 0")
_NON_NEGATIVE: Check = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_UNIT: Check = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_UNIT_OPEN: Check = (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")

# Exact keys of the shared blocks (jaxhead.train.loop.train_config, jaxhead.train.optim).
EXACT: dict[str, Check] = {
    "train.steps": _POSITIVE_INT,
    "train.log_every": _POSITIVE_INT,
    "train.checkpoint_every": _POSITIVE_INT,
    "train.sample_every": _NON_NEGATIVE_INT,
    "train.keep_checkpoints": _POSITIVE_INT,
    "train.hang_dump_s": _NON_NEGATIVE,
    "optim.learning_rate": _POSITIVE,
    "optim.warmup_steps": _NON_NEGATIVE_INT,
    "optim.decay_rate": _POSITIVE,
    "optim.end_fraction": _UNIT,
    "optim.weight_decay": _NON_NEGATIVE,
    "optim.b1": _UNIT_OPEN,
    "optim.b2": _UNIT_OPEN,
    "optim.eps": _POSITIVE,
    "optim.momentum": _UNIT,
    "optim.grad_clip_norm": _NON_NEGATIVE,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _by_name(key: str) -> Check | None:
    block, name = key.split(".", 1)[0], key.rsplit(".", 1)[-1]
    if name == "batch_size" or (name.endswith("_size") and name != "data_axis_size"):
        return _POSITIVE_INT
    if name.endswith("fraction") or name.endswith("dropout"):
        return _UNIT
    if name.endswith("learning_rate") or name.endswith("temperature"):
        return _POSITIVE
    if name.endswith("_steps"):
        return _NON_NEGATIVE_INT
    if name == "fps":
        return _POSITIVE
    if block == "loss":  # the weights of the loss terms
        return _NON_NEGATIVE
    return None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, (dict, ml_collections.ConfigDict)):
        out: dict[str, Any] = {}
        for key in tree.keys():
            out.update(_flatten(tree[key], f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def config_problems(config: ml_collections.ConfigDict) -> list[str]:
    """``key=value (must be ...)`` for every out-of-range value of ``config``."""
    problems = []
    for key, value in sorted(_flatten(config).items()):
        if isinstance(value, float) and math.isnan(value):
            problems.append(f"{key}={value} (must be a number, not NaN)")
            continue
        check = EXACT.get(key) or _by_name(key)
        if check is None or value is None:
            continue
        if isinstance(value, (list, tuple)):
            bad = [v for v in value if _is_number(v) and not check[0](v)]
            if bad:
                problems.append(f"{key}={list(value)} (each must be {check[1]})")
        elif _is_number(value) or isinstance(value, float):
            if not check[0](value):
                problems.append(f"{key}={value} (must be {check[1]})")
    return problems


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raises ``ValueError`` naming every out-of-range value and how to set it."""
    problems = config_problems(config)
    if problems:
        first = problems[0].split("=", 1)[0]
        raise ValueError(
            "config value(s) out of range: "
            + "; ".join(problems)
            + f". Fix them in the config file or on the command line (--config.{first}=...)"
        )
