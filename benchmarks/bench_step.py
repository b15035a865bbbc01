"""Seconds per training step of a NeRF run's own configuration, on its own data.

    python benchmarks/bench_step.py --run W/nerf [--steps 40] [--rounds 3] [--json OUT.json]
    python benchmarks/bench_step.py --run W/nerf --code OTHER_CHECKOUT   # another revision

``--run``: a NeRF workdir (``scripts/train_nerf.py`` or ``scripts/avatar.py``'s ``WORKDIR/nerf``;
it need not be finished: only its ``config.json``, its data and its sync stage are read). The
stage's task is built from that config exactly as training builds it (data pipeline, patches,
F_lip, losses, optimiser), the train step is compiled once, and ``--rounds`` rounds of
``--steps`` steps are timed from a fresh initialisation; the best round is reported with the
compile time and the last step's loss (two checkouts that compute the same step give the same
loss to about 4 digits).

To compare two revisions of the code, time each on the same run, one after the other on an
otherwise idle machine: ``--code`` names the checkout whose ``jaxhead`` is imported (e.g. one
made with ``git worktree add ../old REV``; default: this file's own checkout). Steps per
second alone is not time to quality: this benchmark is for changes that compute the same step.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a NeRF workdir (its config.json is read)")
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; the best is kept")
    parser.add_argument("--json", default="", help="also write the numbers here")
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose jaxhead is timed")
    args = parser.parse_args(argv)
    if not (pathlib.Path(args.code) / "jaxhead" / "__init__.py").is_file():
        parser.error(f"--code {args.code} is not a jaxhead checkout (no jaxhead/__init__.py)")
    path = pathlib.Path(args.run) / "config.json"
    if not path.is_file():
        parser.error(f"{path} does not exist: --run must be a NeRF workdir with its config.json")
    if args.steps < 1 or args.rounds < 1:
        parser.error("--steps and --rounds must be >= 1")
    sys.path.insert(0, str(pathlib.Path(args.code).resolve()))
    import jax
    import ml_collections

    import jaxhead
    from jaxhead.nerf import stage
    from jaxhead.train.mesh import make_mesh

    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    config.eval.splits = ()  # timing only: no held-out split is read
    task = stage.build_task(config, make_mesh(config.get("mesh")), None)
    constants = jax.device_put(task.constants)
    step = jax.jit(task.train_step, donate_argnums=0)
    batches = [next(task.data) for _ in range(args.steps + 1)]
    state = task.init_fn()
    start = time.perf_counter()
    state, metrics = step(state, batches[0], constants)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.rounds):
        state = task.init_fn()
        start = time.perf_counter()
        for batch in batches[1:]:
            state, metrics = step(state, batch, constants)
        jax.block_until_ready(metrics)
        times.append((time.perf_counter() - start) / args.steps)
    result = {
        "run": str(args.run),
        "code": str(pathlib.Path(jaxhead.__file__).resolve().parents[1]),
        "seconds_per_step": min(times),
        "rounds": times,
        "compile_s": compile_s,
        "last_loss": float(metrics["loss"]),
        "devices": [str(d) for d in jax.devices()],
    }
    print(
        f"{result['code']}: {min(times):.3f} s/step (best of {args.rounds} x {args.steps}; rounds "
        + ", ".join(f"{t:.3f}" for t in times)
        + f"), compile {compile_s:.1f} s, last loss {result['last_loss']:.5f}"
    )
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
