"""The train state every stage carries through its ``train_step``."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Parameters and optimiser state of one stage, a plain pytree of arrays.

    ``params`` is a nested dict of arrays (``nnx.to_pure_dict`` of the model's ``nnx.Param``
    state); the model's graph definition stays outside the state, static, and the step rebuilds
    the module with ``nnx.merge(graphdef, params)`` inside ``jax.jit`` (the functional boundary of
    the Flax NNX examples). No PRNG key is stored: steps derive theirs with
    ``jax.random.fold_in(key, step)``, so a resumed run draws the same numbers.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree

    @classmethod
    def create(cls, params: PyTree, tx: optax.GradientTransformation) -> TrainState:
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    def apply_gradients(self, grads: PyTree, tx: optax.GradientTransformation):
        """One optimiser update. Returns ``(new_state, updates)``."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state), updates


def tree_l2(tree: PyTree) -> jax.Array:
    """Global L2 norm of a pytree (big_vision's ``l2_grads`` / ``l2_params`` / ``l2_updates``)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in leaves))
