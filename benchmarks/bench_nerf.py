"""Speed of the head NeRF: jaxhead vs a straightforward PyTorch implementation, side by side.

    python benchmarks/bench_nerf.py                 # full table, ~15 minutes on 2 CPU cores
    python benchmarks/bench_nerf.py --quick         # smoke run, ~3 minutes (tiny batches)
    python benchmarks/bench_nerf.py --json out.json # also write the raw numbers
    python benchmarks/bench_nerf.py --xla-flags=""  # jaxhead with XLA's default CPU flags only

Two field sizes:

* ``default``: the field these benchmarks have always measured (4x128 MLP with a skip, PE 6,
  176-dim condition, 256 feature channels, 24 coarse + 24 fine samples per ray; the stage's
  ``cpu`` model size, ``jaxhead.nerf.config.MODEL_SIZES``, has 64 channels and 16 + 16 samples);
* ``adnerf``: an AD-NeRF-sized field (8x256 with a skip at 4 and a 128-wide view branch, PE 10/4,
  64-dim audio condition, RGB output, 64 coarse + 128 fine samples per ray).

Measured for each, in one run on the same machine, every measurement in its own subprocess (so
``ru_maxrss`` is that measurement's peak and the two frameworks' thread pools do not compete).
Times are the best of several rounds, and the train measurements alternate between frameworks
over two rounds, because the machine is shared and its load changes from minute to minute:

* train steps/s and rays/s: forward + backward through field + hierarchical volume rendering of
  a batch of rays, plus an Adam update (both frameworks);
* render frames/s of the default model at 128² / 256² / 512² output (feature map at 1/4 of the
  resolution + the neural upsampler for jaxhead; the feature map alone for both frameworks);
* compile time (first call minus a steady-state call; PyTorch runs eagerly);
* peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``);
* the field MLP's FLOP rate (forward + backward matmul FLOPs actually executed per second, in
  isolation and inside the train step) against this machine's measured JAX float32 matmul peak.

XLA flags: jaxhead's numbers are taken with ``XLA_FLAGS=--xla_cpu_use_xnnpack=true`` (XNNPACK
matmul kernels; 1.5x faster backward passes for 256-wide layers on this machine, no change at
128), and the train step is also measured with XLA's defaults, reported alongside.

The PyTorch reference computes the same function as jaxhead (the benchmark checks it with shared
weights and deterministic samples) in the way the public PyTorch NeRF code does: the condition is
concatenated to every sample's encoding, every sample gets the full output projection, and the
fine samples are merged by sorting and gathering the per-sample features. jaxhead evaluates the
condition's share of the first layers once per frame, composites the narrow last hidden layer and
projects once per ray (exact, see ``jaxhead.nerf.field``), and compiles the whole step with XLA.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

MODELS = {
    "default": dict(
        width=128, depth=4, skip_layer=2, pos_freqs=6, view_dim=0, view_freqs=4, view_width=64,
        feature_dim=256, condition_dim=176, num_coarse=24, num_fine=24, rays=1024,
    ),
    "adnerf": dict(
        width=256, depth=8, skip_layer=4, pos_freqs=10, view_dim=3, view_freqs=4, view_width=128,
        feature_dim=3, condition_dim=64, num_coarse=64, num_fine=128, rays=128,
    ),
    "hash": dict(
        width=64, depth=2, skip_layer=None, pos_freqs=6, view_dim=0, view_freqs=4, view_width=64,
        feature_dim=256, condition_dim=176, num_coarse=16, num_fine=16, rays=1024,
        encoding="hash", grid=(16, 2, 16, 16, 1024),
    ),
}  # fmt: skip
RENDER_SIZES = (128, 256, 512)
UPSAMPLE = 4
RENDER_CHUNK = 4096
TUNED_XLA_FLAGS = "--xla_cpu_use_xnnpack=true"


def maxrss_mib() -> float:
    # Linux reports kilobytes.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn, repeats: int, min_seconds: float) -> float:
    """Best (least contended) seconds per call over ``repeats`` rounds of >= ``min_seconds``."""
    per_call = []
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        per_call.append(elapsed / calls)
    return float(np.min(per_call))


def point_dim(m: dict) -> int:
    """Size of a point's encoding: NeRF's γ(x), or a hash grid's ``L · F`` features."""
    if m.get("encoding", "frequency") == "hash":
        return m["grid"][0] * m["grid"][1]
    return 3 * (1 + 2 * m["pos_freqs"])


def field_flops_per_sample(m: dict) -> dict:
    """Forward matmul FLOPs per sample: as executed by jaxhead, and by the naive reference."""
    pe = point_dim(m)
    w, c = m["width"], m["condition_dim"]
    view_pe = m["view_dim"] * (1 + 2 * m["view_freqs"]) if m["view_dim"] else 0
    trunk = pe * w + (m["depth"] - 1) * w * w + (pe * w if m["skip_layer"] else 0) + w
    view = w * m["view_width"] if m["view_dim"] else 0
    last = m["view_width"] if m["view_dim"] else w
    per_ray_proj = last * m["feature_dim"]
    jax_macs = trunk + view
    torch_macs = (
        trunk
        + c * w * (2 if m["skip_layer"] else 1)
        + (view_pe * m["view_width"] if m["view_dim"] else 0)
        + per_ray_proj
    )
    return {"jax": 2 * jax_macs, "torch": 2 * torch_macs, "jax_per_ray": 2 * per_ray_proj}


def random_rays(num_rays: int, seed: int = 0):
    """Rays in the unit-sphere frame: cameras at distance 3 aimed at points inside the sphere."""
    rng = np.random.default_rng(seed)
    origins = rng.normal(size=(num_rays, 3))
    origins = 3.0 * origins / np.linalg.norm(origins, axis=-1, keepdims=True)
    targets = rng.uniform(-0.6, 0.6, size=(num_rays, 3))
    directions = targets - origins
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    return origins.astype(np.float32), directions.astype(np.float32)


# ============================================================================================
# jaxhead
# ============================================================================================


def jax_setup(m: dict, seed: int = 0):
    import jax
    from flax import nnx

    from jaxhead.nerf.field import GridSize, HeadField

    field = nnx.jit(
        lambda: HeadField(
            m["condition_dim"], width=m["width"], depth=m["depth"], skip_layer=m["skip_layer"],
            pos_freqs=m["pos_freqs"], view_dim=m["view_dim"], view_freqs=m["view_freqs"],
            view_width=m["view_width"], feature_dim=m["feature_dim"],
            encoding=m.get("encoding", "frequency"), grid=GridSize(*m.get("grid", GridSize())),
            rngs=nnx.Rngs(seed),
        )
    )()  # fmt: skip
    if m.get("encoding", "frequency") != "frequency":
        # A trained grid, not instant-NGP's ±1e-4 start: the equivalence check then compares
        # values of the size the field works with.
        field.tables.value = 0.1 * jax.random.normal(jax.random.key(seed + 1), field.tables.shape)
    graphdef, params = nnx.split(field, nnx.Param)
    return jax, graphdef, params


def jax_render_rays(graphdef, params, origins, directions, condition, key, m):
    """``[R]`` rays -> ``(features [R, F], accumulation [R])`` with the library's render_ray."""
    import jax
    from flax import nnx

    from jaxhead.nerf.render import render_ray

    field = nnx.merge(graphdef, params)
    embedding = field.embed(condition)  # once per frame

    def sample_fn(points, unit_dir):
        if m["view_dim"]:
            return field.sample(points, embedding._replace(view=field.embed_view(unit_dir)))
        return field.sample(points, embedding)

    def one(origin, direction, ray_key):
        return render_ray(
            sample_fn, origin, direction, ray_key, num_coarse=m["num_coarse"],
            num_fine=m["num_fine"],
        )  # fmt: skip

    if key is None:
        composited, accumulation, _ = jax.vmap(lambda o, d: one(o, d, None))(origins, directions)
    else:
        keys = jax.random.split(key, origins.shape[0])
        composited, accumulation, _ = jax.vmap(one)(origins, directions, keys)
    features = field.project(composited, accumulation)
    return features + (1.0 - accumulation)[:, None], accumulation  # white background


def jax_train(m: dict, steps_time: float, repeats: int) -> dict:
    jax, graphdef, params = jax_setup(m)
    import jax.numpy as jnp
    import optax

    origins, directions = map(jnp.asarray, random_rays(m["rays"]))
    condition = jnp.asarray(np.random.default_rng(1).normal(size=m["condition_dim"]), jnp.float32)
    target = jnp.asarray(np.random.default_rng(2).uniform(size=(m["rays"], 3)), jnp.float32)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)

    def loss_fn(params, key):
        features, _ = jax_render_rays(graphdef, params, origins, directions, condition, key, m)
        return jnp.mean(jnp.square(features[:, :3] - target))

    @jax.jit
    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    state = {"params": params, "opt": opt_state, "i": 0}

    def run():
        key = jax.random.fold_in(jax.random.key(0), state["i"])
        state["params"], state["opt"], loss = step(state["params"], state["opt"], key)
        state["i"] += 1
        loss.block_until_ready()

    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    seconds = timed(run, repeats, steps_time)
    return {
        "step_s": seconds,
        "compile_s": max(first - seconds, 0.0),
        "rays_per_s": m["rays"] / seconds,
        "samples_per_ray": m["num_coarse"] + m["num_fine"],
        "maxrss_mib": maxrss_mib(),
    }


def jax_field_only(m: dict, steps_time: float, repeats: int) -> dict:
    """Field MLP alone, forward + backward over ``rays x samples`` points."""
    jax, graphdef, params = jax_setup(m)
    import jax.numpy as jnp
    from flax import nnx

    samples = m["num_coarse"] + m["num_fine"]
    points = jax.random.uniform(jax.random.key(0), (m["rays"], samples, 3), minval=-1, maxval=1)
    condition = jnp.ones((m["condition_dim"],))
    views = jax.random.normal(jax.random.key(1), (m["rays"], 3))

    @jax.jit
    def grad_fn(params):
        def loss(params):
            field = nnx.merge(graphdef, params)
            embedding = field.embed(condition)
            if m["view_dim"]:
                embedding = embedding._replace(view=field.embed_view(views))
            density, g = field.sample(points, embedding)
            return jnp.sum(density) + jnp.sum(g)

        return jax.grad(loss)(params)

    run = lambda: jax.block_until_ready(grad_fn(params))
    run()
    seconds = timed(run, repeats, steps_time)
    return {"field_s": seconds, "points": m["rays"] * samples}


def jax_matmul_peak(repeats: int) -> dict:
    import jax

    best = 0.0
    for n, k in ((2048, 1024), (4096, 512), (8192, 256)):
        a = jax.random.normal(jax.random.key(0), (n, k))
        b = jax.random.normal(jax.random.key(1), (k, k))
        f = jax.jit(lambda a, b: a @ b)
        run = lambda f=f, a=a, b=b: f(a, b).block_until_ready()
        run()
        seconds = timed(run, repeats, 0.5)
        best = max(best, 2.0 * n * k * k / seconds / 1e9)
    return {"matmul_gflops": best}


def jax_render(size: int, steps_time: float, repeats: int, with_upsampler: bool) -> dict:
    import jax
    from flax import nnx

    from jaxhead.nerf.config import HeadNeRFConfig
    from jaxhead.nerf.model import HeadNeRF

    low = size // UPSAMPLE
    m = MODELS["default"]
    config = HeadNeRFConfig(
        feature_dim=m["feature_dim"],
        num_coarse=m["num_coarse"],
        num_fine=m["num_fine"],
        render_size=(low, low),
        upsample=UPSAMPLE,
        chunk_rays=RENDER_CHUNK if low * low > 4096 else 0,
    )
    model = nnx.jit(lambda: HeadNeRF(config, rngs=nnx.Rngs(0)))()
    graphdef, state = nnx.split(model)
    focal = size / (2 * math.tan(math.radians(11.0)))
    c2w = np.eye(4, dtype=np.float32)[None]
    c2w[0, 2, 3] = 0.6
    cameras = {"c2w": c2w, "intrinsics": np.array([[focal, focal, size / 2, size / 2]], np.float32)}
    conditions = {name: np.zeros((1, dim), np.float32) for name, dim in config.condition_dims}

    @jax.jit
    def render(state):
        m = nnx.merge(graphdef, state)
        if with_upsampler:
            return m(cameras, conditions, None)["image"]
        return m.render_features(cameras, conditions, None).features

    run = lambda: render(state).block_until_ready()
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    seconds = timed(run, repeats, steps_time)
    return {
        "frame_s": seconds,
        "fps": 1.0 / seconds,
        "compile_s": max(first - seconds, 0.0),
        "maxrss_mib": maxrss_mib(),
    }


# ============================================================================================
# PyTorch reference (straightforward)
# ============================================================================================


def torch_modules():
    import torch
    from torch import nn

    def encode(x, num_freqs):
        out = [x]
        for k in range(num_freqs):
            out += [torch.sin(x * 2.0**k), torch.cos(x * 2.0**k)]
        return torch.cat(out, dim=-1)

    primes = (1, 2654435761, 805459861)

    def level_resolutions(levels, lo, hi):
        growth = math.exp((math.log(hi) - math.log(lo)) / (levels - 1))
        return [int(math.floor(lo * growth**level + 1e-9)) for level in range(levels)]

    def hash_encode(x, tables, resolutions):
        """instant-NGP's multi-resolution hash encoding, written out per level with torch ops."""
        offsets = torch.tensor([[(k >> i) & 1 for i in range(3)] for k in range(8)])
        out = []
        for level, n in enumerate(resolutions):
            pos = x.clamp(0.0, 1.0) * n
            cell = torch.clamp(torch.floor(pos), 0, n - 1)
            frac = pos - cell
            corners = cell.long()[..., None, :] + offsets  # [..., 8, 3]
            size = tables.shape[1]
            if (n + 1) ** 3 <= size:
                rows = corners[..., 0] + corners[..., 1] * (n + 1) + corners[..., 2] * (n + 1) ** 2
            else:
                hashed = corners[..., 0] * primes[0]
                for i in (1, 2):
                    hashed = hashed ^ ((corners[..., i] * primes[i]) & 0xFFFFFFFF)
                rows = (hashed & 0xFFFFFFFF) % size
            values = tables[level][rows]  # [..., 8, F]
            upper = offsets.to(frac.dtype)
            weights = torch.prod(
                frac[..., None, :] * upper + (1 - frac[..., None, :]) * (1 - upper), dim=-1
            )
            out.append((weights[..., None] * values).sum(-2))
        return torch.cat(out, dim=-1)

    class TorchField(nn.Module):
        """NeRF MLP over per-sample concatenations [γ(x), c] (+ γ(v)), as public repos do; with
        ``encoding="hash"`` the point enters through a hash grid (RAD-NeRF's field)."""

        def __init__(self, m):
            super().__init__()
            self.m = m
            pe = point_dim(m)
            if m.get("encoding", "frequency") == "hash":
                levels, features, log2_table, lo, hi = m["grid"]
                self.resolutions = level_resolutions(levels, lo, hi)
                self.tables = nn.Parameter(torch.zeros(levels, 2**log2_table, features))
            w, c = m["width"], m["condition_dim"]
            dims = []
            for k in range(m["depth"]):
                if k == 0:
                    dims.append(pe + c)
                elif k == m["skip_layer"]:
                    dims.append(w + pe + c)
                else:
                    dims.append(w)
            self.layers = nn.ModuleList(nn.Linear(d, w) for d in dims)
            self.density_out = nn.Linear(w, 1)
            last = w
            if m["view_dim"]:
                view_pe = m["view_dim"] * (1 + 2 * m["view_freqs"])
                self.view_layer = nn.Linear(w + view_pe, m["view_width"])
                last = m["view_width"]
            self.feature_out = nn.Linear(last, m["feature_dim"])

        def forward(self, points, condition, view):
            m = self.m
            n, s, _ = points.shape
            if m.get("encoding", "frequency") == "hash":
                encoded = hash_encode(0.5 * (points + 1.0), self.tables, self.resolutions)
            else:
                encoded = encode(points, m["pos_freqs"])
            inputs = torch.cat([encoded, condition.expand(n, s, -1)], dim=-1)
            h = inputs
            for k, layer in enumerate(self.layers):
                if k == m["skip_layer"]:
                    h = torch.cat([h, inputs], dim=-1)
                h = torch.relu(layer(h))
            density = nn.functional.softplus(self.density_out(h)[..., 0] - 1.0)
            if m["view_dim"]:
                view_pe = encode(view, m["view_freqs"])[:, None, :].expand(n, s, -1)
                h = torch.relu(self.view_layer(torch.cat([h, view_pe], dim=-1)))
            return density, self.feature_out(h)

    def sphere_bounds(origins, directions):
        a = (directions * directions).sum(-1)
        half_b = (origins * directions).sum(-1)
        c = (origins * origins).sum(-1) - 1.0
        disc = half_b * half_b - a * c
        closest = torch.clamp(-half_b / a, min=0.0)
        root = torch.sqrt(torch.clamp(disc, min=0.0))
        near = torch.clamp((-half_b - root) / a, min=0.0)
        far = torch.clamp((-half_b + root) / a, min=0.0)
        hit = (disc > 0) & (far > near)
        return torch.where(hit, near, closest), torch.where(hit, far, closest), hit

    def weights_of(density, t, far, norm):
        t = torch.cat([t, far[:, None]], -1)
        density = torch.cat([density, torch.zeros_like(density[:, :1])], -1)
        delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], -1)
        tau = torch.relu(density) * delta * norm[:, None]
        alpha = 1.0 - torch.exp(-tau)
        trans = torch.exp(
            -torch.cat([torch.zeros_like(tau[:, :1]), torch.cumsum(tau, -1)[:, :-1]], -1)
        )
        return (alpha * trans)[:, :-1]

    def sample_pdf(bins, weights, n, deterministic):
        weights = weights + 1e-5
        pdf = weights / weights.sum(-1, keepdim=True)
        cdf = torch.cumsum(pdf, -1)
        cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
        if deterministic:
            u = torch.linspace(0.0, 1.0, n).expand(cdf.shape[0], n).contiguous()
        else:
            u = (torch.arange(n) + torch.rand(cdf.shape[0], n)) / n
        index = torch.searchsorted(cdf[:, 1:-1].contiguous(), u, right=True)
        cdf_lo, cdf_hi = torch.gather(cdf, 1, index), torch.gather(cdf, 1, index + 1)
        bin_lo, bin_hi = torch.gather(bins, 1, index), torch.gather(bins, 1, index + 1)
        width = cdf_hi - cdf_lo
        frac = torch.clamp(
            (u - cdf_lo) / torch.where(width > 0, width, torch.ones_like(width)), 0, 1
        )
        samples = torch.sort(bin_lo + frac * (bin_hi - bin_lo), -1).values
        return torch.minimum(torch.maximum(samples, bins[:, :1]), bins[:, -1:])

    def render(field, origins, directions, condition, m, deterministic=False):
        near, far, hit = sphere_bounds(origins, directions)
        norm = directions.norm(dim=-1)
        unit = directions / norm[:, None]
        n_rays, s_c, s_f = origins.shape[0], m["num_coarse"], m["num_fine"]
        offsets = torch.full((n_rays, s_c), 0.5) if deterministic else torch.rand(n_rays, s_c)
        t_c = near[:, None] + (far - near)[:, None] * (torch.arange(s_c) + offsets) / s_c

        def evaluate(t):
            points = origins[:, None, :] + t[..., None] * directions[:, None, :]
            density, features = field(points, condition, unit)
            return torch.where(hit[:, None], density, torch.zeros_like(density)), features

        density_c, features_c = evaluate(t_c)
        with torch.no_grad():
            w_c = weights_of(density_c, t_c, far, norm)
            mids = 0.5 * (t_c[:, 1:] + t_c[:, :-1])
            t_f = sample_pdf(mids, w_c[:, 1:-1], s_f, deterministic)
        density_f, features_f = evaluate(t_f)
        t_all, order = torch.sort(torch.cat([t_c, t_f], -1), -1)
        density = torch.gather(torch.cat([density_c, density_f], -1), 1, order)
        features = torch.cat([features_c, features_f], 1)
        features = torch.gather(features, 1, order[..., None].expand(-1, -1, features.shape[-1]))
        weights = weights_of(density, t_all, far, norm)
        rendered = (weights[..., None] * features).sum(1)
        accumulation = weights.sum(-1)
        return rendered + (1.0 - accumulation)[:, None], accumulation

    return torch, TorchField, render


def torch_from_jax(field, params):
    """Copies jaxhead HeadField parameters into the TorchField (same concatenation order)."""
    import torch
    from flax import nnx

    flat = {k: np.asarray(v) for k, v in nnx.to_flat_state(params)}
    with torch.no_grad():
        if ("tables",) in flat:
            field.tables.copy_(torch.from_numpy(flat[("tables",)].copy()))
        for name, module in field.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            key = tuple(int(p) if p.isdigit() else p for p in name.split("."))
            module.weight.copy_(torch.from_numpy(flat[(*key, "kernel")].T.copy()))
            module.bias.copy_(torch.from_numpy(flat[(*key, "bias")].copy()))


def torch_train(m: dict, steps_time: float, repeats: int) -> dict:
    torch, TorchField, render = torch_modules()
    torch.manual_seed(0)
    field = TorchField(m)
    optimizer = torch.optim.Adam(field.parameters(), lr=1e-3)
    origins, directions = map(torch.from_numpy, random_rays(m["rays"]))
    condition = torch.from_numpy(
        np.random.default_rng(1).normal(size=m["condition_dim"]).astype(np.float32)
    )
    target = torch.from_numpy(
        np.random.default_rng(2).uniform(size=(m["rays"], 3)).astype(np.float32)
    )

    def run():
        optimizer.zero_grad(set_to_none=True)
        features, _ = render(field, origins, directions, condition, m)
        loss = ((features[:, :3] - target) ** 2).mean()
        loss.backward()
        optimizer.step()

    run()
    seconds = timed(run, repeats, steps_time)
    return {
        "step_s": seconds,
        "compile_s": 0.0,
        "rays_per_s": m["rays"] / seconds,
        "samples_per_ray": m["num_coarse"] + m["num_fine"],
        "maxrss_mib": maxrss_mib(),
        "threads": torch.get_num_threads(),
    }


def torch_render(size: int, steps_time: float, repeats: int) -> dict:
    from jaxhead.nerf.config import HeadNeRFConfig

    torch, TorchField, render = torch_modules()
    config = HeadNeRFConfig()  # the bounding sphere of the jax render
    m = MODELS["default"]
    field = TorchField(m).eval()
    low = size // UPSAMPLE
    # Rays of the same camera as jax_render, in the unit-sphere frame.
    focal = low / (2 * math.tan(math.radians(11.0)))
    cols, rows = np.meshgrid(np.arange(low) + 0.5, np.arange(low) + 0.5)
    dirs = np.stack([(cols - low / 2) / focal, -(rows - low / 2) / focal, -np.ones_like(cols)], -1)
    directions = torch.from_numpy((dirs.reshape(-1, 3) / config.bound_radius).astype(np.float32))
    origins = torch.zeros_like(directions)
    origins[:, 2] = 0.6 / config.bound_radius
    condition = torch.zeros(m["condition_dim"])

    def run():
        with torch.no_grad():
            for start in range(0, directions.shape[0], RENDER_CHUNK):
                stop = start + RENDER_CHUNK
                render(field, origins[start:stop], directions[start:stop], condition, m, True)

    run()
    seconds = timed(run, repeats, steps_time)
    return {"frame_s": seconds, "fps": 1.0 / seconds, "compile_s": 0.0, "maxrss_mib": maxrss_mib()}


def check_equivalence(m: dict) -> dict:
    """Same weights, same deterministic samples: jaxhead and the PyTorch reference agree."""
    jax, graphdef, params = jax_setup(m)
    import jax.numpy as jnp

    torch, TorchField, render = torch_modules()
    rays = 64
    origins, directions = random_rays(rays, seed=5)
    condition = np.random.default_rng(6).normal(size=m["condition_dim"]).astype(np.float32)
    features, accumulation = jax.jit(
        lambda p: jax_render_rays(
            graphdef, p, jnp.asarray(origins), jnp.asarray(directions), condition, None, m
        )
    )(params)
    field = TorchField(m)
    torch_from_jax(field, params)
    with torch.no_grad():
        t_features, t_acc = render(
            field, torch.from_numpy(origins), torch.from_numpy(directions),
            torch.from_numpy(condition), m, deterministic=True,
        )  # fmt: skip
    return {
        "max_abs_diff_features": float(np.max(np.abs(np.asarray(features) - t_features.numpy()))),
        "max_abs_diff_accumulation": float(
            np.max(np.abs(np.asarray(accumulation) - t_acc.numpy()))
        ),
    }


# ============================================================================================
# Driver
# ============================================================================================


def worker(task: str, model: str, size: int, quick: bool) -> dict:
    steps_time, repeats = (1.0, 2) if quick else (3.0, 3)
    m = dict(MODELS[model])
    if quick:
        m["rays"] = max(m["rays"] // 8, 16)
    if task == "jax_train":
        return jax_train(m, steps_time, repeats)
    if task == "torch_train":
        return torch_train(m, steps_time, repeats)
    if task == "jax_field":
        return jax_field_only(m, steps_time, repeats)
    if task == "matmul":
        return jax_matmul_peak(repeats)
    if task == "jax_render":
        return jax_render(size, steps_time, repeats, with_upsampler=True)
    if task == "jax_render_features":
        return jax_render(size, steps_time, repeats, with_upsampler=False)
    if task == "torch_render":
        return torch_render(size, steps_time, repeats)
    if task == "equivalence":
        return check_equivalence(m)
    raise ValueError(f"unknown task {task}")


def run_worker(
    task: str, model: str = "default", size: int = 0, quick: bool = False, xla_flags: str = ""
) -> dict:
    cmd = [sys.executable, __file__, "--worker", task, "--model", model, "--size", str(size)]
    if quick:
        cmd.append("--quick")
    print(f"  running {task} {model} {size or ''} [{xla_flags}]", file=sys.stderr, flush=True)
    env = dict(os.environ, XLA_FLAGS=xla_flags)
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(results: dict, quick: bool) -> str:
    lines = []
    mm = max(results["matmul"]["matmul_gflops"], results["matmul_default"]["matmul_gflops"])
    lines.append(
        f"XLA flags for jaxhead: `{results['xla_flags'] or '(defaults)'}`. JAX float32 matmul "
        f"peak measured in this run: **{mm:.0f} GFLOP/s**.\n"
    )
    lines.append(
        "| field | rays/step | samples/ray | jaxhead steps/s | jaxhead rays/s | PyTorch rays/s | "
        "ratio | jaxhead rays/s, default XLA flags | jaxhead compile s | peak RSS MiB "
        "(jax / torch) | field MLP GFLOP/s alone | in train step | equivalence max abs diff |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model in results.get("models", list(MODELS)):
        j, t = results[f"jax_train/{model}"], results[f"torch_train/{model}"]
        j_default = results[f"jax_train_default_flags/{model}"]
        f = results[f"jax_field/{model}"]
        m = dict(MODELS[model])
        flops = field_flops_per_sample(m)
        alone = 3 * flops["jax"] * f["points"] / f["field_s"] / 1e9
        in_step = 3 * flops["jax"] * j["rays_per_s"] * j["samples_per_ray"] / 1e9
        eq = results[f"equivalence/{model}"]
        rays = MODELS[model]["rays"] if not quick else max(MODELS[model]["rays"] // 8, 16)
        lines.append(
            f"| {model} | {rays} | {j['samples_per_ray']} | {1 / j['step_s']:.2f} | "
            f"{j['rays_per_s']:.0f} | {t['rays_per_s']:.0f} | "
            f"**{j['rays_per_s'] / t['rays_per_s']:.2f}x** | {j_default['rays_per_s']:.0f} | "
            f"{j['compile_s']:.1f} | "
            f"{j['maxrss_mib']:.0f} / {t['maxrss_mib']:.0f} | "
            f"{alone:.0f} ({alone / mm:.0%} of peak) | "
            f"{in_step:.0f} | {eq['max_abs_diff_features']:.1e} |"
        )
    if not results["render_sizes"]:
        return "\n".join(lines)
    lines.append("")
    lines.append(
        "| output | feature map | jaxhead frames/s (features + upsampler) | jaxhead frames/s "
        "(features) | PyTorch frames/s (features) | ratio | jaxhead compile s | peak RSS MiB "
        "(jax / torch) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for size in results["render_sizes"]:
        full = results[f"jax_render/{size}"]
        feat = results[f"jax_render_features/{size}"]
        t = results[f"torch_render/{size}"]
        lines.append(
            f"| {size}² | {size // UPSAMPLE}² | {full['fps']:.2f} | {feat['fps']:.2f} | "
            f"{t['fps']:.2f} | **{feat['fps'] / t['fps']:.2f}x** | {full['compile_s']:.1f} | "
            f"{full['maxrss_mib']:.0f} / {t['maxrss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument(
        "--xla-flags", default=TUNED_XLA_FLAGS, help="XLA_FLAGS for the jaxhead measurements"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"fields to train, of {', '.join(MODELS)}"
    )
    parser.add_argument("--no-render", action="store_true", help="skip the render table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, args.size, args.quick)))
        return

    sizes = () if args.no_render else RENDER_SIZES[:1] if args.quick else RENDER_SIZES
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    flags = args.xla_flags
    results = {
        "models": models,
        "render_sizes": list(sizes),
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "xla_flags": flags,
    }
    results["matmul"] = run_worker("matmul", quick=args.quick, xla_flags=flags)
    results["matmul_default"] = run_worker("matmul", quick=args.quick)
    for model in models:
        results[f"equivalence/{model}"] = run_worker("equivalence", model, xla_flags=flags)
        # The CPU is shared: interleave the frameworks over rounds and keep each one's best.
        candidates = {
            "jax_train": flags,
            "torch_train": flags,
            "jax_field": flags,
            "jax_train_default_flags": "",
        }
        for _ in range(1 if args.quick else 2):
            for name, task_flags in candidates.items():
                task = name.removesuffix("_default_flags")
                result = run_worker(task, model, quick=args.quick, xla_flags=task_flags)
                key = f"{name}/{model}"
                time_key = "field_s" if task == "jax_field" else "step_s"
                if key not in results or result[time_key] < results[key][time_key]:
                    results[key] = result
    for size in sizes:
        for task in ("jax_render", "jax_render_features", "torch_render"):
            results[f"{task}/{size}"] = run_worker(
                task, size=size, quick=args.quick, xla_flags=flags
            )
    again = run_worker("matmul", quick=args.quick, xla_flags=flags)
    if again["matmul_gflops"] > results["matmul"]["matmul_gflops"]:
        results["matmul"] = again
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(markdown(results, args.quick))


if __name__ == "__main__":
    main()
