"""Optimiser factory: one config block -> one optax transformation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
import optax


def optim_config(**overrides) -> ml_collections.ConfigDict:
    """The default ``config.optim`` block."""
    config = ml_collections.ConfigDict(
        {
            "name": "adam",  # adam | adamw | sgd
            "learning_rate": 5e-4,
            "schedule": "cosine",  # constant | cosine | exponential
            "warmup_steps": 0,
            "decay_rate": 0.1,  # exponential: lr multiplied by this over the whole run
            "end_fraction": 0.05,  # cosine: final lr / peak lr
            "weight_decay": 0.0,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "momentum": 0.9,  # sgd
            "grad_clip_norm": 0.0,  # 0 disables global-norm clipping
        }
    )
    config.update(overrides)
    return config


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning-rate schedule named by ``config.schedule`` over ``total_steps``."""
    lr = float(config.learning_rate)
    warmup = int(config.warmup_steps)
    decay_steps = max(int(total_steps) - warmup, 1)
    if config.schedule == "constant":
        main = optax.constant_schedule(lr)
    elif config.schedule == "cosine":
        main = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(config.end_fraction))
    elif config.schedule == "exponential":
        main = optax.exponential_decay(lr, decay_steps, float(config.decay_rate))
    else:
        raise ValueError(
            f"unknown config.optim.schedule {config.schedule!r}; "
            "use 'constant', 'cosine' or 'exponential'"
        )
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(
    config: ml_collections.ConfigDict,
    total_steps: int,
    *,
    labels: Callable[[Any], Any] | None = None,
    scales: Mapping[str, float] | None = None,
) -> optax.GradientTransformation:
    """Builds the optimiser named by ``config.name`` with its schedule and optional clipping.

    Parameter groups: ``labels(params)`` gives each leaf a group name and ``scales`` each group's
    learning-rate multiplier (e.g. a grid encoding's tables at 10x the network's rate, as
    instant-NGP / RAD-NeRF train them); the groups share the schedule's shape and one global-norm
    clip over all gradients. Without ``labels`` every parameter is in one group.
    """
    if labels is None or not scales:
        tx = _base_optimizer(config, make_schedule(config, total_steps))
    else:
        schedule = make_schedule(config, total_steps)

        def scaled(factor: float) -> optax.GradientTransformation:
            return _base_optimizer(config, lambda step: factor * schedule(step))

        groups = {name: scaled(float(factor)) for name, factor in scales.items()}
        tx = optax.multi_transform(groups, labels)
    if config.grad_clip_norm and config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(float(config.grad_clip_norm)), tx)
    return tx


def _base_optimizer(config: ml_collections.ConfigDict, schedule) -> optax.GradientTransformation:
    if config.name == "adam":
        return optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
    if config.name == "adamw":
        return optax.adamw(
            schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay
        )
    if config.name == "sgd":
        return optax.sgd(schedule, momentum=config.momentum)
    raise ValueError(f"unknown config.optim.name {config.name!r}; use 'adam', 'adamw' or 'sgd'")
