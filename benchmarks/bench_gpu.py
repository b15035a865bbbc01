"""Speed of the ``full`` NeRF configs on an accelerator: train steps/s, rays/s and 512² frames/s.

    python benchmarks/bench_gpu.py                         # frequency, hash and tri-plane fields
    python benchmarks/bench_gpu.py --fields hash --steps 500 --json out.json

For each field (``configs/voca.py:full,field=F``: 64² feature map -> 512² image through the
neural upsampler, 64 + 64 samples per ray for the MLP, the grid fields' 64-wide trunk, batch of
``data.batch_size`` frame pairs) this builds the stage's own train step
(:func:`jaxhead.nerf.step.make_train_step`, the AD-NeRF audio network as F_lip) and renderer
(:class:`jaxhead.nerf.step.Renderer`) over a batch of the shapes the full config trains on, and
times them after compilation. The batch's content is random (images, audio) with cameras looking
at the head as the synthetic data's do: speed does not depend on the pixels, and no dataset has to
be generated on the accelerator machine. Rays/s counts the feature-map rays of a step (2 frames
per pair x 64²), each with its coarse and fine samples, forward and backward.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxhead.nerf.conditions import LipSource, RunConditions
from jaxhead.nerf.config import voca_config
from jaxhead.nerf.step import (
    Renderer,
    build_models,
    make_nerf_optimizer,
    make_render_fn,
    make_setup,
    make_train_step,
    param_dict,
)
from jaxhead.train.state import TrainState

IDENTITIES, SEQUENCES, FRAMES = 8, 64, 9600  # the full config's synthetic set (8 x 8 x 6 s)


def camera(num: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``c2w [num, 4, 4]`` on a 0.9 m circle around the origin (yaw within ±10°), looking at it
    (OpenGL convention), and pixel ``intrinsics [num, 4]`` of a 14° field of view."""
    c2w = np.zeros((num, 4, 4), np.float32)
    for i, yaw in enumerate(np.deg2rad(rng.uniform(-10, 10, num))):
        back = np.array([np.sin(yaw), 0.0, np.cos(yaw)])  # camera +z points away from the head
        right = np.cross([0.0, 1.0, 0.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        c2w[i, :3, :3] = np.stack([right, up, back], axis=1)
        c2w[i, :3, 3] = 0.9 * back
        c2w[i, 3, 3] = 1.0
    focal = 0.5 * size / np.tan(np.deg2rad(7.0))
    intrinsics = np.tile(np.array([focal, focal, size / 2, size / 2], np.float32), (num, 1))
    return c2w, intrinsics


def batch_of(pairs: int, size: int, lr: int, audio_dim: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = pairs * 2
    c2w, intrinsics = camera(n, size, rng)
    frames = {
        "image": rng.uniform(size=(n, size, size, 3)),
        "image_lr": rng.uniform(size=(n, lr, lr, 3)),
        "mask": (rng.uniform(size=(n, size, size, 1)) > 0.5),
        "mask_lr": rng.uniform(size=(n, lr, lr, 1)),
        "intrinsics": intrinsics,
        "c2w": c2w,
        "audio": rng.normal(size=(n, 16, audio_dim)),
        "blink": rng.uniform(size=(n,)),
        "identity": rng.integers(0, IDENTITIES, n),
        "sequence_index": rng.integers(0, SEQUENCES, n),
        "row": rng.integers(0, FRAMES, n),
    }
    out = {}
    for key, value in frames.items():
        value = np.asarray(value)
        dtype = np.int32 if value.dtype.kind in "iu" else np.float32
        out[key] = jnp.asarray(value.astype(dtype).reshape((pairs, 2) + value.shape[1:]))
    return out


def measure(
    field: str, steps: int, render_frames: int, audio_dim: int = 80, size: str = "full"
) -> dict:
    config = voca_config(f"{size},field={field}" if size != "cpu" else f"field={field}")
    with config.unlocked():
        config.sync.train = False  # F_lip from the AD-NeRF audio network: no sync stage needed
    tracks = {"identity": np.zeros(FRAMES, np.int32)}
    run = RunConditions(tracks, IDENTITIES, SEQUENCES, audio_dim, None)
    setup, graphdefs = make_setup(config, run, LipSource(config))
    tx = make_nerf_optimizer(config)
    state = jax.jit(lambda: TrainState.create(param_dict(*build_models(setup, 0)), tx))()
    step = jax.jit(make_train_step(setup, graphdefs, tx, config.loss), donate_argnums=(0,))
    size, lr = int(config.data.resolution), int(config.data.lr_resolution)
    pairs = int(config.data.batch_size)
    batch = batch_of(pairs, size, lr, audio_dim)
    began = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    train_s = time.perf_counter() - began
    rays = pairs * 2 * setup.model_config.render_size[0] * setup.model_config.render_size[1]

    renderer = Renderer(make_render_fn(graphdefs))
    params = state.params
    frames = {k: v.reshape((8,) + v.shape[2:]) for k, v in batch_of(4, size, lr, audio_dim).items()}
    codes = {name: jnp.zeros((8, dim), jnp.float32) for name, (_, dim) in setup.code_sizes.items()}
    image = renderer(params, frames, codes)["image"]
    jax.block_until_ready(image)
    began = time.perf_counter()
    for _ in range(max(render_frames // 8, 1)):
        image = renderer(params, frames, codes)["image"]
    jax.block_until_ready(image)
    render_s = time.perf_counter() - began
    rendered = 8 * max(render_frames // 8, 1)
    return {
        "field": field,
        "image_size": list(image.shape[1:3]),
        "batch_pairs": pairs,
        "compile_s": compile_s,
        "steps_per_s": steps / train_s,
        "rays_per_s": steps * rays / train_s,
        "render_frames_per_s": rendered / render_s,
        "final_loss": float(metrics["loss"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", default="frequency,hash,triplane")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--render_frames", type=int, default=64)
    parser.add_argument("--json", default="")
    parser.add_argument("--size", default="full", help="model size: full (default), cpu, smoke")
    args = parser.parse_args()
    device = jax.devices()[0]
    results = {"device": f"{device.platform}: {device.device_kind}", "runs": []}
    print(results["device"], flush=True)
    for field in args.fields.split(","):
        result = measure(field, args.steps, args.render_frames, size=args.size)
        results["runs"].append(result)
        print(json.dumps(result), flush=True)
    print("| field | steps/s | train rays/s | frames/s | compile s |")
    print("|---|---|---|---|---|")
    for r in results["runs"]:
        print(
            f"| {r['field']} | {r['steps_per_s']:.2f} | {r['rays_per_s']:,.0f} "
            f"| {r['render_frames_per_s']:.1f} | {r['compile_s']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
