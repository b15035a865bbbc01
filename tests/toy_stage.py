"""A toy stage (a two-layer MLP regressing a fixed random function) on the shared plumbing.

It exists to test ``jaxhead.train`` before the real stages use it: sharded vs single-device,
multi-process vs single-process, and SIGKILL + resume. Run as a script it is a thin entry point
like ``scripts/train_*.py``::

    python tests/toy_stage.py --config tests/toy_stage.py:smoke --workdir runs/toy
"""

from __future__ import annotations

import os
import sys
import time

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.train import cli, loop
from jaxhead.train.distributed import distributed_config
from jaxhead.train.mesh import mesh_config
from jaxhead.train.optim import make_optimizer, optim_config
from jaxhead.train.state import TrainState, tree_l2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.train = loop.train_config(steps=40, log_every=5, checkpoint_every=10, progress=False)
    config.optim = optim_config(learning_rate=1e-2, schedule="constant")
    config.mesh = mesh_config()
    config.distributed = distributed_config()
    config.data = ml_collections.ConfigDict({"batch_size": 16, "num_examples": 256, "dim": 4})
    config.toy = ml_collections.ConfigDict(
        {"hidden": 32, "step_delay_s": 0.0, "nan_at_step": -1, "validate_delay_s": 0.0}
    )
    if arg == "smoke":
        config.train.steps = 20
    config.lock()
    return config


class ToyModel(nnx.Module):
    def __init__(self, dim: int, hidden: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(dim, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.gelu(self.hidden(x)))[..., 0]


class GlobalBatchIterator:
    """Deterministic shuffled batches; each process keeps its slice of the global batch.

    Slicing one global stream (instead of a separate stream per process) makes a 2-process run
    see exactly the batches of a 1-process run, which the equivalence test needs.
    """

    def __init__(self, x, y, batch_size, seed, delay_s=0.0):
        ds = grain.MapDataset.source(np.arange(len(x))).shuffle(seed=seed).repeat()
        self._it = iter(ds.batch(batch_size, drop_remainder=True).to_iter_dataset())
        self._x, self._y, self._delay = x, y, delay_s
        n, p = jax.process_count(), jax.process_index()
        self._slice = slice(p * batch_size // n, (p + 1) * batch_size // n)

    def __next__(self):
        if self._delay:
            time.sleep(self._delay)
        idx = next(self._it)[self._slice]
        return {"x": self._x[idx], "y": self._y[idx]}

    def get_state(self):
        return self._it.get_state()

    def set_state(self, state):
        self._it.set_state(state)


def build_task(config, mesh) -> loop.Task:
    del mesh
    rng = np.random.default_rng(1234)
    x = rng.normal(size=(config.data.num_examples, config.data.dim)).astype(np.float32)
    y = np.sin(x @ rng.normal(size=(config.data.dim,))).astype(np.float32)
    tx = make_optimizer(config.optim, config.train.steps)
    graphdef = nnx.graphdef(ToyModel(config.data.dim, config.toy.hidden, nnx.Rngs(0)))
    nan_at = int(config.toy.nan_at_step)

    def init_fn():
        model = ToyModel(config.data.dim, config.toy.hidden, nnx.Rngs(config.seed))
        return TrainState.create(nnx.to_pure_dict(nnx.state(model, nnx.Param)), tx)

    def train_step(state, batch):
        def loss_fn(params):
            pred = nnx.merge(graphdef, params)(batch["x"])
            return jnp.mean(jnp.square(pred - batch["y"]))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        # A deliberately poisoned loss for the non-finite guard test.
        loss = jnp.where(state.step + 1 == nan_at, jnp.nan, loss)
        new_state, updates = state.apply_gradients(grads, tx)
        metrics = {
            "loss": loss,
            "l2_grads": tree_l2(grads),
            "l2_params": tree_l2(new_state.params),
            "l2_updates": tree_l2(updates),
        }
        return new_state, metrics

    def evaluate(state):
        pred = nnx.merge(graphdef, state.params)(jnp.asarray(x))
        return {"mse": float(jnp.mean(jnp.square(pred - jnp.asarray(y))))}

    def validate(state):
        time.sleep(float(config.toy.validate_delay_s))
        return evaluate(state)

    data = GlobalBatchIterator(
        x, y, config.data.batch_size, config.seed, delay_s=config.toy.step_delay_s
    )
    return loop.Task(
        init_fn=init_fn, train_step=train_step, data=data, evaluate=evaluate, validate=validate
    )


_ = optax  # the optimiser comes from jaxhead.train.optim


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    _CONFIG = cli.define_config_flag()
    _WORKDIR = cli.define_workdir_flag()

    def main(argv):
        del argv
        loop.train(_CONFIG.value, _WORKDIR.value, build_task)

    cli.run(main)
