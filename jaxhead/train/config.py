"""Shared config blocks and the ``get_config(arg)`` variant syntax.

Config files under ``configs/`` are ``get_config(arg=None)`` functions returning a locked
``ml_collections.ConfigDict`` (data only). ``arg`` selects a variant, big_vision style::

    --config configs/voca.py            # default
    --config configs/voca.py:smoke      # a minute on 2 CPU cores
    --config configs/gpvae.py:smoke,variant=lstm_vae

and any field is overridable (``--config.train.steps=100``). The shared blocks live here, inside
the installed package, so ``python scripts/x.py`` works from any directory.
"""

from __future__ import annotations

import ml_collections

from jaxhead.train.distributed import distributed_config
from jaxhead.train.loop import train_config
from jaxhead.train.mesh import mesh_config
from jaxhead.train.optim import optim_config


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses ``"smoke,res=64"`` into ``{smoke: True, res: 64}`` over ``defaults``.

    A bare word is a boolean flag; ``key=value`` takes the type of the default (or int/float/str
    by inspection when there is no default). An unknown word is an error naming the known ones.
    """
    result = ml_collections.ConfigDict(defaults)
    if not arg:
        return result
    for part in arg.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise ValueError(
                f"unknown config variant '{key}' (known: {known}); write them after the file "
                "name, e.g. --config configs/voca.py:smoke"
            )
        if not sep:
            result[key] = True
            continue
        default = defaults[key]
        if isinstance(default, bool):
            words = {"1": True, "true": True, "yes": True, "on": True}
            words.update({"0": False, "false": False, "no": False, "off": False})
            if value.lower() not in words:
                raise ValueError(f"config variant '{part}': {key} takes true or false")
            result[key] = words[value.lower()]
            continue
        kind = type(default) if isinstance(default, (int, float)) else str
        try:
            result[key] = kind(value)
        except ValueError:
            raise ValueError(
                f"config variant '{part}': {key} takes a {kind.__name__} (like {default!r})"
            ) from None
    return result


def base_config(seed: int = 0, **train) -> ml_collections.ConfigDict:
    """The blocks every stage shares: seed, train loop, optimiser, mesh, distributed."""
    config = ml_collections.ConfigDict()
    config.seed = seed
    config.train = train_config(**train)
    config.optim = optim_config()
    config.mesh = mesh_config()
    config.distributed = distributed_config()
    return config
