"""A check for train steps: no device array may be baked into the compiled program.

On an accelerator, a closed-over device array (a PRNG key made outside the step, say) becomes a
constant of the program by a device-to-host copy, which the loop's ``jax.transfer_guard`` refuses;
on the CPU it goes unnoticed. :func:`no_baked_arrays` wraps a step so that tracing it fails on
CPU too.
"""

from __future__ import annotations

import jax


def no_baked_arrays(fn):
    """``fn``, checked at each trace: its jaxpr closes over no ``jax.Array``."""

    def checked(*args):
        consts = jax.make_jaxpr(fn)(*args).consts
        baked = [(c.shape, c.dtype) for c in consts if isinstance(c, jax.Array)]
        assert not baked, f"device arrays baked into the step: {baked}"
        return fn(*args)

    return checked
