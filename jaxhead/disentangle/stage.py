"""The disentangle stage on the shared loop: the code extractor or the landmark autoencoder.

``config.model.name`` picks what one run trains:

* ``extractor`` (paper 000 sec. 3.3): :class:`~jaxhead.disentangle.models.CodeExtractor` trained
  with one :func:`~jaxhead.disentangle.losses.factor_info_nce` per head on exact single-factor
  groups (:mod:`jaxhead.disentangle.data`); evaluation probes its codes on held-out scenes.
* ``landmark_ae`` (paper 001 sec. 3.2, eq. 2): :class:`~jaxhead.disentangle.models.
  LandmarkAutoencoder` trained with the self + swapped L1 reconstruction; evaluation probes
  ``f_m`` / ``f_e`` on held-out sentences (or the held-out tail of a real sequence).

Both write ``eval.json`` (the factor-by-code R² table and its diagonal summary) and
``probe.md`` / ``probe.png`` in the workdir. :func:`load_extractor` and :func:`load_landmark_ae`
give later stages (the NeRF's ``config.disentangle.init_from``) the trained functions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxhead.disentangle import data as data_lib
from jaxhead.disentangle import losses
from jaxhead.disentangle.models import CodeExtractor, LandmarkAutoencoder, unit_rms
from jaxhead.eval import probe
from jaxhead.train import loop
from jaxhead.train.optim import make_optimizer
from jaxhead.train.restore import finished_run_config, restore_run
from jaxhead.train.state import TrainState, tree_l2
from jaxhead.train.workdir import write_json_atomic

MODELS = ("extractor", "landmark_ae")
LANDMARK_FILE = "landmark_ae.json"  # normalisation and layout of a landmark_ae run
TRAIN_COMMAND = (
    "python scripts/train_disentangle.py --config configs/disentangle.py:model={model} "
    "--workdir {workdir}"
)
LANDMARK_OWN = {"f_m": "mouth", "f_e": "blink"}


def code_sizes(config: ml_collections.ConfigDict) -> tuple[tuple[str, int], ...]:
    """``((name, dim), ...)`` of the extractor heads in :data:`data_lib.CODE_FACTORS` order."""
    sizes = config.model.extractor.codes
    return tuple((name, int(sizes[name])) for name in data_lib.CODE_FACTORS)


def build_extractor(config: ml_collections.ConfigDict, seed: int) -> CodeExtractor:
    m = config.model.extractor
    return CodeExtractor(
        code_sizes(config), int(config.data.extractor.image_size), tuple(m.channels),
        int(m.hidden), rngs=nnx.Rngs(seed),
    )  # fmt: skip


def build_landmark_ae(config: ml_collections.ConfigDict, input_dim: int, seed: int):
    m = config.model.landmark_ae
    return LandmarkAutoencoder(
        input_dim, int(m.mouth_dim), int(m.eye_dim), tuple(m.hidden), rngs=nnx.Rngs(seed)
    )


def _params(model) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _metrics(loss, terms, grads, new_state, updates) -> dict:
    return {
        "loss": loss,
        **terms,
        "l2_grads": tree_l2(grads),
        "l2_params": tree_l2(new_state.params),
        "l2_updates": tree_l2(updates),
    }


# --- extractor -----------------------------------------------------------------------------------


def extractor_codes(graphdef, params, images: jax.Array) -> dict[str, jax.Array]:
    """``uint8 or float [..., H, W, 3] -> {name: [..., D]}`` unit-RMS codes (the C̄ of eq. 6)."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        images = images.astype(jnp.float32) / 255.0
    model = nnx.merge(graphdef, params)
    return {k: unit_rms(v) for k, v in model(images).items()}


def make_extractor_step(graphdef, tx, temperature: float):
    """``train_step(state, {"images": uint8 [G, 9, H, W, 3]}) -> (state, metrics)``."""

    def train_step(state: TrainState, batch):
        images = batch["images"].astype(jnp.float32) / 255.0
        groups, slots = images.shape[:2]

        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            codes = model(images.reshape((groups * slots,) + images.shape[2:]))
            codes = {k: v.reshape(groups, slots, -1) for k, v in codes.items()}
            terms = {
                f"loss_{name}": losses.factor_info_nce(codes[name], data_lib.SHARES[k], temperature)
                for k, name in enumerate(data_lib.CODE_FACTORS)
            }
            return sum(terms.values()) / len(terms), (terms, codes)

        (loss, (terms, codes)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, updates = state.apply_gradients(grads, tx)
        for k, name in enumerate(data_lib.CODE_FACTORS):
            terms[f"accuracy_{name}"] = losses.factor_accuracy(codes[name], data_lib.SHARES[k])
        return new_state, _metrics(loss, terms, grads, new_state, updates)

    return train_step


def embed_images(code_fn, images: np.ndarray, batch: int = 128) -> dict[str, np.ndarray]:
    """Runs ``code_fn`` over ``images [N, ...]`` in fixed-size chunks (one compiled shape)."""
    out: dict[str, list] = {}
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        for k, v in code_fn(padded).items():
            out.setdefault(k, []).append(np.asarray(v)[: len(chunk)])
    return {k: np.concatenate(v) for k, v in out.items()}


def probe_codes(
    codes: dict, factors: dict, alpha: float, train_fraction: float = 0.5, kernel: bool = False
) -> dict:
    """Splits samples into probe-train / held-out halves and returns the R² table."""
    n = len(next(iter(codes.values())))
    cut = int(round(n * train_fraction))
    return probe.probe_table(
        {k: (v[:cut], v[cut:]) for k, v in codes.items()},
        {k: (v[:cut], v[cut:]) for k, v in factors.items()},
        alpha,
        kernel,
    )


def group_accuracy(code_fn, images: np.ndarray) -> dict[str, float]:
    """Per head, on held-out groups ``uint8 [G, 9, H, W, 3]``: the fraction of images sharing
    the head's factor with the anchor that are closer to it than every group image that does
    not (:func:`losses.factor_accuracy`; chance is low, 1 is perfect invariance)."""
    groups, slots = images.shape[:2]
    codes = embed_images(code_fn, images.reshape((groups * slots,) + images.shape[2:]))
    return {
        name: float(
            losses.factor_accuracy(jnp.asarray(codes[name].reshape(groups, slots, -1)), shares)
        )
        for name, shares in zip(data_lib.CODE_FACTORS, data_lib.SHARES, strict=True)
    }


def evaluate_extractor(code_fn, probe_set: dict, alpha: float, heldout_groups=None) -> dict:
    """Held-out probe tables (linear and RBF-kernel) of the extractor codes against the true
    factors, and the held-out group accuracy per head when ``heldout_groups`` is given."""
    codes = embed_images(code_fn, probe_set["images"])
    factors = {k[len("factor_") :]: v for k, v in probe_set.items() if k.startswith("factor_")}
    names = [k for k in data_lib.CODE_FACTORS if k in codes]
    table = probe_codes({f"C_{k}": codes[k] for k in names}, factors, alpha)
    own = {f"C_{k}": data_lib.TRUE_FACTORS[k] for k in names}
    cut = int(round(len(probe_set["images"]) * 0.5))  # the split of probe_codes
    per_dim = {}
    for k in names:  # which parameters of its own factor each code recovers
        y = factors[data_lib.TRUE_FACTORS[k]]
        r2 = probe.probe_r2_per_dim(codes[k][:cut], y[:cut], codes[k][cut:], y[cut:], alpha)
        labels = data_lib.FACTOR_DIM_NAMES.get(data_lib.TRUE_FACTORS[k])
        per_dim[f"C_{k}"] = dict(zip(labels or map(str, range(len(r2))), r2, strict=True))
    results = {
        "probe": table,
        "own": own,
        "summary": probe.diagonal_summary(table, own),
        "own_per_dimension": per_dim,
        "probe_kernel": probe_codes(
            {f"C_{k}": codes[k] for k in names}, factors, alpha, kernel=True
        ),
    }
    if heldout_groups is not None:
        results["heldout_group_accuracy"] = group_accuracy(code_fn, heldout_groups)
    return results


def _extractor_task(config, workdir) -> loop.Task:
    groups, probe_set = data_lib.load_extractor_data(
        config.data.extractor, config.data.cache_dir, progress=bool(config.train.progress)
    )
    tx = make_optimizer(config.optim, config.train.steps)
    graphdef = nnx.graphdef(build_extractor(config, 0))

    def init_fn():
        return TrainState.create(_params(build_extractor(config, config.seed)), tx)

    code_fn = jax.jit(functools.partial(extractor_codes, graphdef))

    def evaluate(state):
        params = jax.device_get(state.params)
        results = evaluate_extractor(
            lambda x: code_fn(params, x), probe_set, float(config.eval.ridge_alpha),
            probe_set.get("group_images"),
        )  # fmt: skip
        _report(workdir, results, "Latent-code extractor")
        return results

    return loop.Task(
        init_fn=init_fn,
        train_step=make_extractor_step(graphdef, tx, float(config.loss.temperature)),
        data=data_lib.GroupBatches(groups["images"], int(config.data.batch_size), config.seed),
        evaluate=evaluate,
    )


# --- landmark autoencoder ------------------------------------------------------------------------


def make_landmark_step(graphdef, tx, swap_weight: float):
    """``train_step(state, {"mouth_a", "eyes_a", "mouth_b", "eyes_b"}) -> (state, metrics)``."""

    def train_step(state: TrainState, batch):
        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            parts_a = (batch["mouth_a"], batch["eyes_a"])
            parts_b = (batch["mouth_b"], batch["eyes_b"])
            terms = losses.swap_reconstruction_loss(
                model.decode,
                model.encode(jnp.concatenate(parts_a, -1)),
                model.encode(jnp.concatenate(parts_b, -1)),
                parts_a,
                parts_b,
            )
            return terms["rec"] + swap_weight * terms["swap"], terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, updates = state.apply_gradients(grads, tx)
        terms = {f"loss_{k}": v for k, v in terms.items()}
        return new_state, _metrics(loss, terms, grads, new_state, updates)

    return train_step


def landmark_embed(graphdef, params, landmarks: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``E_L`` on standardised ``[..., M + E]`` parts -> ``(f_m, f_e)``."""
    return nnx.merge(graphdef, params).encode(landmarks)


def evaluate_landmark_ae(graphdef, params, train: dict, test: dict, alpha: float) -> dict:
    """Held-out reconstruction / swap L1 and the probe table of ``f_m`` and ``f_e`` (probes
    fitted on the train split's codes, scored on the held-out split's)."""
    model = nnx.merge(graphdef, params)

    def encode(split):
        return model.encode(jnp.concatenate([split["mouth"], split["eyes"]], -1))

    mouth, eyes = jnp.asarray(test["mouth"]), jnp.asarray(test["eyes"])
    n = len(mouth)
    partner = (np.arange(n) + n // 2) % n  # B = the face half the split away
    parts_a, parts_b = (mouth, eyes), (mouth[partner], eyes[partner])
    codes_a = encode(test)
    codes_b = tuple(c[partner] for c in codes_a)
    terms = losses.swap_reconstruction_loss(model.decode, codes_a, codes_b, parts_a, parts_b)
    fitted = encode(train)
    codes = {
        "f_m": (np.asarray(fitted[0]), np.asarray(codes_a[0])),
        "f_e": (np.asarray(fitted[1]), np.asarray(codes_a[1])),
    }
    factors = {k: (train["factors"][k], v) for k, v in test["factors"].items()}
    table = probe.probe_table(codes, factors, alpha)
    return {
        "heldout_rec_l1": float(terms["rec"]) / 2,
        "heldout_swap_l1": float(terms["swap"]) / 2,
        "probe": table,
        "own": LANDMARK_OWN,
        "summary": probe.diagonal_summary(table, LANDMARK_OWN),
        "heldout_faces": n,
        "probe_train_faces": len(train["mouth"]),
    }


def _landmark_task(config, workdir) -> loop.Task:
    lm = data_lib.load_landmark_data(config.data.landmarks)
    input_dim = lm["train"]["mouth"].shape[1] + lm["train"]["eyes"].shape[1]
    if workdir is not None and jax.process_index() == 0:
        info = {"layout": lm["layout"], "mouth_size": int(lm["mouth_size"]),
                "input_dim": int(input_dim), "mean": lm["mean"].tolist(),
                "std": lm["std"].tolist()}  # fmt: skip
        write_json_atomic(pathlib.Path(workdir) / LANDMARK_FILE, info)
    tx = make_optimizer(config.optim, config.train.steps)
    graphdef = nnx.graphdef(build_landmark_ae(config, input_dim, 0))

    def init_fn():
        return TrainState.create(_params(build_landmark_ae(config, input_dim, config.seed)), tx)

    def evaluate(state):
        results = evaluate_landmark_ae(
            graphdef, jax.device_get(state.params), lm["train"], lm["test"],
            float(config.eval.ridge_alpha),
        )  # fmt: skip
        results["source"] = config.data.landmarks.source
        _report(workdir, results, "Landmark autoencoder")
        return results

    train = lm["train"]
    return loop.Task(
        init_fn=init_fn,
        train_step=make_landmark_step(graphdef, tx, float(config.loss.swap_weight)),
        data=data_lib.PairBatches(
            train["mouth"], train["eyes"], int(config.data.batch_size), config.seed
        ),
        evaluate=evaluate,
    )


# --- stage ---------------------------------------------------------------------------------------


def _report(workdir, results: dict, title: str) -> None:
    summary = results["summary"]
    lines = [f"{title}: held-out probe R² (own factor / largest other)"]
    for code, row in summary["codes"].items():
        other = "-" if row["max_other"] is None else f"{row['max_other']:.3f}"
        lines.append(f"  {code:6s} own {row['own']:.3f}  other {other} ({row['max_other_factor']})")
    print("\n".join(lines), flush=True)
    if workdir is not None and jax.process_index() == 0:
        probe.write_report(workdir, "probe", results["probe"], results["own"], title)


def build_task(config: ml_collections.ConfigDict, mesh, workdir=None) -> loop.Task:
    """The stage's :class:`jaxhead.train.loop.Task` for ``config.model.name``."""
    del mesh  # small models: replicated state, batch split over the data axis by the loop
    name = config.model.name
    if name == "extractor":
        return _extractor_task(config, workdir)
    if name == "landmark_ae":
        return _landmark_task(config, workdir)
    raise ValueError(f"unknown config.model.name {name!r}; use one of {MODELS}")


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Trains (or resumes) the disentangle stage in ``workdir``; see ``configs/disentangle.py``."""
    workdir = pathlib.Path(workdir)
    return loop.train(config, workdir, functools.partial(build_task, workdir=workdir))


# --- loading for the NeRF stage ------------------------------------------------------------------


def _restore(workdir: pathlib.Path, expected: str, build) -> tuple:
    workdir = pathlib.Path(workdir).expanduser()
    command = TRAIN_COMMAND.format(model=expected, workdir=workdir)
    config = finished_run_config(workdir, "disentangle", command)
    if config.model.name != expected:
        raise ValueError(
            f"{workdir} holds a '{config.model.name}' run, not '{expected}'; train one with "
            f"`{command}`"
        )
    model = build(config)

    def abstract_state(config):
        tx = make_optimizer(config.optim, config.train.steps)
        return jax.eval_shape(lambda: TrainState.create(_params(model), tx))

    run = restore_run(workdir, "disentangle", command, abstract_state, config=config)
    return config, nnx.graphdef(model), jax.device_get(run.state.params), run.step


def _area_resize(images: np.ndarray, size: int) -> np.ndarray:
    n, h, w, c = images.shape
    if h != w or h % size:
        raise ValueError(
            f"images of {h}x{w} cannot be box-filtered to the extractor's {size}x{size}: give "
            f"square images whose side is a multiple of {size}"
        )
    f = h // size
    return images.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A trained latent-code extractor: ``extractor(images) -> {"id", "ex", "al", "ill"}``.

    ``images``: ``[B, H, W, 3]`` float in ``[0, 1]`` (or uint8), framed as the synthetic frames
    are (frontal head on white); a side that is a multiple of ``image_size`` is box-filtered down.
    Returns NumPy ``{name: [B, D]}`` unit-RMS codes (directions of the contrastive space).
    """

    code_fn: Callable
    image_size: int
    code_sizes: dict
    step: int
    workdir: pathlib.Path

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images [B, H, W, 3], got {images.shape}")
        if images.dtype == np.uint8:
            images = images.astype(np.float32) / 255.0
        if images.shape[1] != self.image_size:
            images = _area_resize(images.astype(np.float32), self.image_size)
        return {k: np.asarray(v) for k, v in self.code_fn(images.astype(np.float32)).items()}


def load_extractor(workdir: str | pathlib.Path) -> Extractor:
    """Loads the latest checkpoint of an ``extractor`` run (``config.disentangle.init_from``)."""
    config, graphdef, params, step = _restore(workdir, "extractor", lambda c: build_extractor(c, 0))
    jitted = jax.jit(functools.partial(extractor_codes, graphdef))
    return Extractor(
        lambda images: jitted(params, images),
        int(config.data.extractor.image_size),
        dict(code_sizes(config)),
        step,
        pathlib.Path(workdir),
    )


@dataclasses.dataclass(frozen=True)
class LandmarkEncoder:
    """A trained landmark autoencoder's ``E_L``: ``encoder(landmarks) -> (f_m, f_e)``.

    ``landmarks``: ``[B, P, 2 or 3]`` raw landmarks in the run's layout (``ibug68`` of the
    synthetic heads or ``mediapipe478``); they get the training normalisation (eye corners, then
    the train split's per-coordinate standardisation). Returns NumPy ``f_m [B, Dm]``,
    ``f_e [B, De]``.
    """

    embed_fn: Callable
    layout: str
    mean: np.ndarray
    std: np.ndarray
    step: int
    workdir: pathlib.Path

    def __call__(self, landmarks) -> tuple[np.ndarray, np.ndarray]:
        layout = data_lib.LAYOUTS[self.layout]
        points = np.asarray(landmarks, np.float64)
        if points.ndim != 3 or points.shape[1] != layout["size"]:
            raise ValueError(
                f"this landmark autoencoder takes [B, {layout['size']}, C] {self.layout} "
                f"landmarks, got {points.shape}"
            )
        mouth, eyes = data_lib.landmark_parts(points, layout)
        flat = np.concatenate([mouth, eyes], -1)
        if flat.shape[1] != len(self.mean):
            raise ValueError(
                f"landmarks with {points.shape[-1]} coordinates give {flat.shape[1]} inputs; "
                f"this model was trained on {len(self.mean)}"
            )
        z = ((flat - self.mean) / self.std).astype(np.float32)
        f_m, f_e = self.embed_fn(z)
        return np.asarray(f_m), np.asarray(f_e)


def load_landmark_ae(workdir: str | pathlib.Path) -> LandmarkEncoder:
    """Loads the latest checkpoint of a ``landmark_ae`` run."""
    path = pathlib.Path(workdir).expanduser() / LANDMARK_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist, so {workdir} holds no trained landmark autoencoder; train "
            f"one with `{TRAIN_COMMAND.format(model='landmark_ae', workdir=workdir)}`"
        )
    info = json.loads(path.read_text())
    _, graphdef, params, step = _restore(
        workdir, "landmark_ae", lambda c: build_landmark_ae(c, int(info["input_dim"]), 0)
    )
    jitted = jax.jit(functools.partial(landmark_embed, graphdef))
    return LandmarkEncoder(
        lambda z: jitted(params, z),
        info["layout"],
        np.asarray(info["mean"], np.float32),
        np.asarray(info["std"], np.float32),
        step,
        pathlib.Path(workdir),
    )
