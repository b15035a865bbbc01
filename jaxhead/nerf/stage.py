"""The head-NeRF stage (paper 000 secs. 3.2-3.3): data -> model -> pure train step -> evaluation.

Everything generic (mesh, sharding, checkpoints, resumption, metrics, non-finite guard) is the
shared loop of :mod:`jaxhead.train.loop`; this module only says what a NeRF step is:

* **conditions** (paper 000 eq. 1): learnable codes ``C_id`` and ``C_al`` per identity, ``C_ill``
  per sequence, ``C_ex`` per training frame (:class:`jaxhead.nerf.model.LatentCodes`), the lip
  feature ``F_lip`` from an AD-NeRF-style audio network over the frame's audio-feature window
  (until a sync module is loaded) and, as DFA-NeRF's eye-blink conditioning (paper 001 sec. 3.5),
  the frame's blink signal;
* **losses** (paper 000 eqs. 2-7): ``L = λ_rec (L_per + L_pho) + λ_dis L_dis + λ_v L_v`` with
  ``L_pho`` the masked photometric error of the upsampled image plus a whole-image term (the mask
  of eq. 5 focuses the face; the whole-image term keeps the background clean) and a low-resolution
  term on the first three feature channels; ``L_per`` a VGG16 perceptual loss when weights are
  configured, otherwise the documented structural fallback ``1 - SSIM``; ``L_v`` the velocity loss
  of eq. 7 over the consecutive frame pairs of each batch; ``L_dis`` is off until the disentangle
  stage provides reference codes. Two small regularisers (documented choices): the accumulated
  opacity is pulled towards the low-resolution head mask, and the codes get an L2 penalty so that
  the zero code is the "average" expression used for frames that have no code of their own.
* **evaluation**: held-out sentences (``val``) and held-out views (``val_views``); frames of a
  held-out sentence have no ``C_ex`` (zero is used: the mouth follows the audio) and their
  sentence has no ``C_ill``: it is fitted on the sentence's first frame with the network frozen
  (the latent-optimisation protocol of GLO / NeRF-W), and that frame is excluded from the scores.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxhead.audio.io import SAMPLE_RATE
from jaxhead.data import voca_frames
from jaxhead.data.pipeline import make_pipeline
from jaxhead.nerf import losses as nerf_losses
from jaxhead.nerf.model import HeadNeRF, HeadNeRFConfig, LatentCodes
from jaxhead.nerf.perceptual import perceptual_loss, perceptual_loss_choice, ssim
from jaxhead.pretrained.vgg import load_vgg16
from jaxhead.train import loop
from jaxhead.train.optim import make_optimizer
from jaxhead.train.state import TrainState, tree_l2

PyTree = Any


def loss_config() -> ml_collections.ConfigDict:
    """Weights of the loss terms (paper 000 eq. 2 defaults: λ_rec=1, λ_dis=5, λ_v=10)."""
    return ml_collections.ConfigDict(
        {
            "rec": 1.0,
            "dis": 5.0,
            "velocity": 10.0,
            "perceptual": 0.1,  # weight of L_per inside L_rec (VGG or the SSIM fallback)
            "lowres": 1.0,  # low-resolution RGB photometric term
            "background": 1.0,  # whole-image photometric term
            "mask": 0.1,  # accumulation vs head mask
            "code": 1e-3,  # L2 on the latent codes
            "vgg_weights": "",  # torchvision vgg16 state dict (.pth / .safetensors / .npz)
        }
    )


def model_block(**overrides) -> ml_collections.ConfigDict:
    """The ``config.model`` block of the CPU-sized head NeRF (configs/voca.py, configs/video.py);
    ``overrides`` replace fields. :data:`SMOKE_MODEL` / :data:`FULL_MODEL` resize it."""
    block = {
        # Latent code sizes (paper 000: C_id, C_ex, C_al, C_ill); 0 drops a code.
        "codes": {"id": 32, "ex": 16, "al": 32, "ill": 16},
        "lip_dim": 32,  # F_lip (audio network or projected sync features); 0: no F_lip
        "view_input": "none",
        "width": 128,
        "depth": 4,
        "skip_layer": 2,
        "pos_freqs": 6,
        "feature_dim": 64,
        "render_size": (32, 32),
        "num_coarse": 16,
        "num_fine": 16,
        "bound_radius": 0.2,
        "upsample": 4,
        "upsampler_widths": (64, 32),
        "audio_channels": (32, 32, 64, 64),
    }
    unknown = sorted(set(overrides) - set(block))
    if unknown:
        raise KeyError(f"unknown model fields {unknown}; known: {sorted(block)}")
    block.update(overrides)
    return ml_collections.ConfigDict(block)


# ``config.model.update(**SMOKE_MODEL)``: the few-second plumbing check.
SMOKE_MODEL = dict(
    width=32, depth=2, skip_layer=None, feature_dim=16, render_size=(16, 16), num_coarse=8,
    num_fine=8, upsampler_widths=(16, 8), audio_channels=(8, 8, 8, 8),
)  # fmt: skip
# ``config.model.update(**FULL_MODEL)``: the GPU-sized model (8x256 field, 64² -> 512²).
FULL_MODEL = dict(
    width=256, depth=8, skip_layer=4, pos_freqs=10, feature_dim=256, render_size=(64, 64),
    num_coarse=64, num_fine=64, upsample=8, upsampler_widths=(256, 128, 64),
)  # fmt: skip


def psnr(mse: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio in dB of images in [0, 1]."""
    return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


@dataclasses.dataclass(frozen=True)
class NeRFSetup:
    """What the stage's pure functions close over: static shapes and module graph definitions.

    ``lip``: where F_lip comes from: ``"audio_net"`` (the AD-NeRF-style audio network over each
    frame's log-mel window, trained with the NeRF), ``"sync"`` (the frozen audio encoder of the
    sync stage, ``config.sync.init_from``; frames carry a precomputed ``lip`` entry) or
    ``"none"`` (``config.model.lip_dim=0`` without a sync stage: no F_lip, the audio does not
    reach the field; paper 000 table 2's "w/o sync module").
    ``disentangle``: whether the train step adds L_dis against the extractor's reference codes.
    """

    model_config: HeadNeRFConfig
    code_sizes: dict
    num_train_frames: int
    seed: int
    lip: str = "audio_net"
    disentangle: bool = False


def _init_from(config: ml_collections.ConfigDict, block: str) -> str:
    """``config.<block>.init_from`` ('' when the block is absent: configs of older runs)."""
    return str(config[block].init_from) if block in config else ""


def model_config_from(
    config: ml_collections.ConfigDict, audio_dim: int, sync_dim: int = 0
) -> HeadNeRFConfig:
    """The field's condition layout; ``sync_dim > 0``: F_lip comes from the sync stage's
    features: as they are, or with ``config.sync.projection`` through a learned linear map to
    ``config.model.lip_dim`` (zero-initialised, :class:`HeadNeRFConfig` ``lip_input_dim``)."""
    values = config.model.to_dict()
    codes = values.pop("codes")
    lip_dim = values.pop("lip_dim")
    project = bool(sync_dim) and bool(config.sync.get("projection", False))
    condition_dims = [(name, dim) for name, dim in codes.items() if dim > 0]
    if sync_dim or lip_dim > 0:
        condition_dims.append(("lip", lip_dim if project or not sync_dim else sync_dim))
    condition_dims.append(("blink", 1))
    values.update(
        condition_dims=tuple(condition_dims),
        audio_net=not sync_dim and lip_dim > 0,
        audio_dim=audio_dim,
        lip_input_dim=sync_dim if project else 0,
    )
    return HeadNeRFConfig.from_dict(values)


# --- data: frame sources, F_lip from the sync stage -----------------------------------------


def frames_module(data_config: ml_collections.ConfigDict):
    """The frame-source module of ``config.data.kind``: ``voca`` or ``video``."""
    if data_config.kind == "voca":
        return voca_frames
    if data_config.kind == "video":
        from jaxhead.data import video_frames

        return video_frames
    raise ValueError(
        f"unknown config.data.kind {data_config.kind!r}; the NeRF stage reads 'voca' "
        "(configs/voca.py) or 'video' (configs/video.py: a preprocessed video folder)"
    )


SYNC_FEATURES = ("embedding", "pre_activation", "normalized", "standardized")


@functools.cache
def sync_encoder(init_from: str):
    """The sync stage of ``config.sync.init_from``, loaded once per process."""
    from jaxhead.sync.stage import load_sync_encoder

    return load_sync_encoder(init_from)


def _sync_outputs(
    config: ml_collections.ConfigDict, samples: np.ndarray, frame_numbers: np.ndarray, kind: str
) -> np.ndarray:
    """The sync audio encoder's ``embedding`` or ``pre_activation`` at ``frame_numbers``."""
    encoder = sync_encoder(_init_from(config, "sync"))
    fps = float(config.data.fps)
    if abs(encoder.fps - fps) > 1e-6:
        raise ValueError(
            f"the sync stage in {encoder.workdir} was trained at {encoder.fps} fps but "
            f"config.data.fps is {fps}; train the sync stage at the NeRF's frame rate "
            f"(--config.data.fps={fps}) or set config.sync.init_from=''"
        )
    frame_numbers = np.asarray(frame_numbers, np.int64)
    num = max(int(frame_numbers.max(initial=-1)) + 1, int(len(samples) / SAMPLE_RATE * fps))
    windows = encoder.audio_windows(np.asarray(samples, np.float32), num)
    embed = encoder.embed_audio if kind == "embedding" else encoder.audio_features
    return np.asarray(embed(jnp.asarray(windows)), np.float32)[frame_numbers]


def sync_lip_features(
    config: ml_collections.ConfigDict, samples: np.ndarray, frame_numbers: np.ndarray
) -> np.ndarray:
    """``[len(frame_numbers), D]`` F_lip of the sync stage's audio encoder (paper 000 fig. 3).

    ``samples``: a 16 kHz track; ``frame_numbers``: frames of that track at ``config.data.fps``.
    ``config.sync.features``: ``"embedding"`` (the sync embedding itself, non-negative and
    sparse: after its final ReLU most entries are zero), ``"pre_activation"`` (the same output
    layer before that ReLU: dense and signed, but with norms around 40 it stalls the NeRF's fit),
    ``"normalized"`` (the pre-activation standardised over its dimensions, per frame) or
    ``"standardized"`` (the pre-activation standardised per dimension with the mean and standard
    deviation over the training frames: :func:`sync_statistics`; new audio at render time is
    standardised with the same constants).
    """
    return _read_sync(config, [_sync_outputs(config, samples, frame_numbers, _raw(config))])[0]


def _raw(config: ml_collections.ConfigDict) -> str:
    """The encoder output that ``config.sync.features`` reads: the embedding or the layer
    before its ReLU (checked against :data:`SYNC_FEATURES`)."""
    kind = str(config.sync.get("features", "embedding"))
    if kind not in SYNC_FEATURES:
        raise ValueError(f"config.sync.features={kind!r}: use one of {SYNC_FEATURES}")
    return "embedding" if kind == "embedding" else "pre_activation"


def _read_sync(config: ml_collections.ConfigDict, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """``config.sync.features`` applied to raw encoder outputs (one array per track)."""
    kind = str(config.sync.get("features", "embedding"))
    if kind == "normalized":
        return [
            (x - x.mean(-1, keepdims=True)) / (x.std(-1, keepdims=True) + 1e-6) for x in outputs
        ]
    if kind == "standardized":
        mean, std = sync_statistics(config)
        return [(x - mean) / std for x in outputs]
    return outputs


_SYNC_STATISTICS: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}


def _statistics_key(config: ml_collections.ConfigDict) -> tuple[str, str]:
    return _init_from(config, "sync"), config.data.to_json(sort_keys=True)


def _moments(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate(outputs, axis=0).astype(np.float64)
    return values.mean(0).astype(np.float32), (values.std(0) + 1e-6).astype(np.float32)


def sync_statistics(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], std [D])`` of the sync pre-activation over ``config``'s training frames.

    Computed once per process and data config from the training split (deterministic given
    ``config.data`` and the sync run; :func:`load_frames` of the training split records them
    from its own pass), so training, held-out evaluation and renders of new audio share them.
    """
    key = _statistics_key(config)
    if key not in _SYNC_STATISTICS:
        module = frames_module(config.data)
        source = module.load_frames(config.data, "train", progress=False)
        _SYNC_STATISTICS[key] = _moments(
            [
                _sync_outputs(config, samples, numbers, "pre_activation")
                for _, samples, numbers in module.audio_tracks(config.data, source)
            ]
        )
    return _SYNC_STATISTICS[key]


def audio_conditions(
    config: ml_collections.ConfigDict, samples: np.ndarray, num_frames: int
) -> dict[str, np.ndarray]:
    """Per-frame audio conditioning of a new 16 kHz track for ``num_frames`` frames.

    ``{"lip": [T, D]}`` with a sync stage (``config.sync.init_from``), else ``{"audio": [T,
    window, 80]}`` log-mel windows for the model's audio network (as the training frames have).
    """
    if _init_from(config, "sync"):
        return {"lip": sync_lip_features(config, samples, np.arange(num_frames))}
    from jaxhead.audio import spectral

    feats = jax.jit(spectral.log_mel)(jnp.asarray(samples, jnp.float32))
    windows = spectral.window_features(
        feats, num_frames, float(config.data.fps), voca_frames.LOGMEL_RATE,
        int(config.data.audio_window),
    )  # fmt: skip
    return {"audio": np.asarray(windows, np.float32)}


class LipFrames:
    """A frame source with each frame's precomputed F_lip (``"lip"``, ``[D]``) added."""

    def __init__(self, source, lip: np.ndarray):
        if len(lip) != len(source):
            raise ValueError(f"{len(lip)} lip features for {len(source)} frames")
        self.source, self.lip = source, lip

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {**self.source[i], "lip": self.lip[int(i)]}

    def __getattr__(self, name):
        return getattr(self.source, name)


def load_frames(config: ml_collections.ConfigDict, split: str, *, progress: bool = True):
    """One split of the stage's data, with the sync stage's F_lip when configured."""
    module = frames_module(config.data)
    source = module.load_frames(config.data, split, progress=progress)
    if not _init_from(config, "sync"):
        return source
    encoder = sync_encoder(_init_from(config, "sync"))
    raw = _raw(config)
    tracks = module.audio_tracks(config.data, source)
    outputs = [_sync_outputs(config, samples, numbers, raw) for _, samples, numbers in tracks]
    if split == "train" and raw == "pre_activation":
        _SYNC_STATISTICS.setdefault(_statistics_key(config), _moments(outputs))
    lip = np.zeros((len(source), encoder.embed_dim), np.float32)
    for (rows, _, _), values in zip(tracks, _read_sync(config, outputs), strict=True):
        lip[rows] = values
    return LipFrames(source, lip)


def frame_keys(setup: NeRFSetup) -> tuple[str, ...]:
    """The keys of a frame that the train step and the renderer read."""
    return BATCH_KEYS + (("lip",) if setup.lip == "sync" else ())


# --- reference codes of the disentangle stage (paper 000 sec. 3.3) ----------------------------


def _unit_rms(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(np.square(x), axis=-1, keepdims=True) + 1e-12)


def reference_codes(
    config: ml_collections.ConfigDict, setup: NeRFSetup, frames, batch: int = 64
) -> dict[str, np.ndarray]:
    """The reference tables C̄ of L_dis from the extractor of ``config.disentangle.init_from``.

    ``ex``: the extractor's expression code of each training frame; ``id`` / ``al``: the mean
    over an identity's frames, ``ill``: over a sequence's frames, each mean brought back to unit
    RMS (the extractor's code space). Tables match ``setup.code_sizes`` row for row.
    """
    from jaxhead.disentangle.stage import load_extractor

    extractor = load_extractor(_init_from(config, "disentangle"))
    for name, (_, dim) in setup.code_sizes.items():
        have = extractor.code_sizes.get(name)
        if have != dim:
            raise ValueError(
                f"config.model.codes.{name} is {dim} but the extractor in {extractor.workdir} "
                f"emits {have}-dim C_{name} codes; set --config.model.codes.{name}={have} "
                "(or train the extractor with the NeRF's code sizes)"
            )
    n = len(frames)
    per_frame: dict[str, list[np.ndarray]] = {name: [] for name in setup.code_sizes}
    identity = np.zeros(n, np.int64)
    sequence = np.zeros(n, np.int64)
    for start in range(0, n, batch):
        items = [frames[i] for i in range(start, min(start + batch, n))]
        codes = extractor(np.stack([item["image"] for item in items]))
        for name in per_frame:
            per_frame[name].append(codes[name])
        identity[start : start + len(items)] = [int(item["identity"]) for item in items]
        sequence[start : start + len(items)] = [int(item["sequence_index"]) for item in items]
    group_of = {"id": identity, "al": identity, "ill": sequence}
    tables = {}
    for name, (rows, _) in setup.code_sizes.items():
        values = np.concatenate(per_frame[name]).astype(np.float32)
        if name == "ex":
            tables[name] = values
            continue
        groups = group_of[name]
        table = np.zeros((rows, values.shape[1]), np.float32)
        for g in range(rows):
            members = values[groups == g]
            if len(members):
                table[g] = _unit_rms(members.mean(0))
        tables[name] = table
    return tables


def build_models(setup: NeRFSetup, seed: int) -> tuple[HeadNeRF, LatentCodes]:
    rngs = nnx.Rngs(seed)
    nerf = HeadNeRF(setup.model_config, rngs=rngs)
    codes = LatentCodes(setup.code_sizes, init_std=0.0, rngs=rngs)
    return nerf, codes


def code_indices(batch: Mapping[str, jax.Array], sizes: Mapping) -> dict:
    """Which table row each code of each frame uses (paper 000: id/al per identity, ...)."""
    source = {
        "id": batch["identity"],
        "al": batch["identity"],
        "ill": batch["sequence_index"],
        "ex": batch["row"],
    }
    return {name: source[name] for name in sizes}


def conditions_for(codes: dict, batch: Mapping[str, jax.Array]) -> dict:
    """The field's conditions of a batch: codes, F_lip (``lip``, or the ``audio`` window of the
    model's audio network) and the blink signal."""
    out = dict(codes)
    if "lip" in batch:
        out["lip"] = batch["lip"].reshape(batch["lip"].shape[0], -1)
    else:
        audio = batch["audio"]
        out["audio"] = audio.reshape(audio.shape[0], -1, audio.shape[-1])
    out["blink"] = batch["blink"].reshape(-1, 1)
    return out


def reconstruction_losses(
    out: Mapping[str, jax.Array], frames: Mapping[str, jax.Array], features_fn=None
):
    """Per-term losses of one batch of frames ``[N, ...]`` (paper 000 eqs. 3-5).

    ``features_fn`` (VGG16 activations) selects the perceptual loss of eq. 4; ``None`` the
    structural fallback ``1 - SSIM`` (see :mod:`jaxhead.nerf.perceptual`).
    """
    image, mask = frames["image"], frames["mask"]
    pho = nerf_losses.masked_photometric(out["image"], image, mask)
    whole = jnp.mean(jnp.square(out["image"] - image))
    lowres = jnp.mean(jnp.square(out["rgb_lowres"] - frames["image_lr"]))
    if features_fn is None:
        per = 1.0 - jnp.mean(jax.vmap(ssim)(out["image"], image))
    else:
        per = perceptual_loss(features_fn, out["image"], image)
    mask_term = jnp.mean(jnp.square(out["accumulation"] - frames["mask_lr"][..., 0]))
    return {"pho": pho, "whole": whole, "lowres": lowres, "per": per, "mask": mask_term}


def make_train_step(
    setup: NeRFSetup, graphdefs, tx: optax.GradientTransformation, weights, vgg_graphdef=None
):
    """``train_step(state, batch[, constants]) -> (state, metrics)`` over pairs ``[B, 2, ...]``.

    ``constants`` (the loop's ``Task.constants``, replicated, never trained): ``{"vgg": frozen
    VGG16 parameters}`` when ``vgg_graphdef`` is given (the VGG perceptual loss; else the SSIM
    fallback) and ``{"ref": reference code tables}`` with ``setup.disentangle`` (L_dis, paper
    000 eq. 6).
    """
    nerf_def, codes_def = graphdefs
    base_key = jax.random.key(setup.seed)

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], constants=None):
        constants = constants or {}
        features_fn = None
        if vgg_graphdef is not None:
            vgg_params = constants["vgg"]
            features_fn = lambda images: nnx.merge(vgg_graphdef, vgg_params)(images)  # noqa: E731

        key = jax.random.fold_in(base_key, state.step)
        pairs = batch["image"].shape[0]
        frames = jax.tree.map(lambda x: x.reshape((pairs * 2,) + x.shape[2:]), batch)

        def loss_fn(params):
            nerf = nnx.merge(nerf_def, params["nerf"])
            codes = nnx.merge(codes_def, params["codes"])
            indices = code_indices(frames, setup.code_sizes)
            code_values = codes(indices)
            cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
            out = nerf(cameras, conditions_for(code_values, frames), key)
            terms = reconstruction_losses(out, frames, features_fn)
            # Paper 000 eq. 7 over each (j-1, j) pair.
            pred = out["image"].reshape((pairs, 2) + out["image"].shape[1:])
            target = batch["image"]
            terms["velocity"] = jnp.mean(jax.vmap(nerf_losses.velocity_loss)(pred, target))
            terms["code"] = sum(jnp.mean(jnp.square(v)) for v in code_values.values())
            dis = 0.0
            if setup.disentangle:
                ref = {k: jnp.take(constants["ref"][k], indices[k], axis=0) for k in indices}
                terms["dis"] = nerf_losses.disentangle_loss(
                    code_values, ref, dict.fromkeys(code_values, 1.0)
                )
                dis = weights.dis * terms["dis"]
            rec = (
                terms["pho"]
                + weights.background * terms["whole"]
                + (weights.lowres * terms["lowres"] + weights.perceptual * terms["per"])
            )
            total = (
                weights.rec * rec
                + weights.velocity * terms["velocity"]
                + weights.mask * terms["mask"]
                + weights.code * terms["code"]
                + dis
            )
            return total, (terms, out)

        (loss, (terms, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, updates = state.apply_gradients(grads, tx)
        mse = jnp.mean(jnp.square(out["image"] - frames["image"]))
        metrics = {"loss": loss, "psnr": psnr(mse), **{f"loss_{k}": v for k, v in terms.items()}}
        metrics.update(
            l2_grads=tree_l2(grads),
            l2_params=tree_l2(new_state.params),
            l2_updates=tree_l2(updates),
        )
        return new_state, metrics

    return train_step


class _Batches:
    """The grain pipeline's iterator with its state (resumable) for the shared loop."""

    def __init__(self, pipeline, keys=None):
        self._pipeline = pipeline
        self._it = iter(pipeline)
        self._keys = keys or BATCH_KEYS

    def __next__(self):
        batch = next(self._it)
        return {k: batch[k] for k in self._keys}

    def get_state(self) -> dict:
        return self._it.get_state()

    def set_state(self, state: dict) -> None:
        self._it.set_state(state)


BATCH_KEYS = (
    "image", "image_lr", "mask", "mask_lr", "intrinsics", "c2w", "audio", "blink", "identity",
    "sequence_index", "row",
)  # fmt: skip


def render_fn(graphdefs):
    """Jitted ``(params, frames, code_values) -> model outputs`` (deterministic sampling)."""
    nerf_def, _ = graphdefs

    @jax.jit
    def render(params, frames, code_values):
        nerf = nnx.merge(nerf_def, params["nerf"])
        cameras = {"c2w": frames["c2w"], "intrinsics": frames["intrinsics"]}
        return nerf(cameras, conditions_for(code_values, frames), None)

    return render


def fit_illumination(render, params, frame, codes, steps: int, lr: float = 0.05):
    """Fits the sequence's ``ill`` code on one frame with the network frozen (GLO/NeRF-W)."""
    tx = optax.adam(lr)

    @jax.jit
    def step(ill, opt_state):
        def loss(ill):
            out = render(params, frame, {**codes, "ill": ill})
            return jnp.mean(jnp.square(out["image"] - frame["image"]))

        value, grad = jax.value_and_grad(loss)(ill)
        updates, opt_state = tx.update(grad, opt_state)
        return optax.apply_updates(ill, updates), opt_state, value

    ill = codes["ill"]
    opt_state = tx.init(ill)
    for _ in range(steps):
        ill, opt_state, _ = step(ill, opt_state)
    return ill


MOUTH = slice(48, 68)  # the iBUG-68 layout's lip points (outer 48-59, inner 60-67)


def mouth_box(landmarks: np.ndarray, height: int, width: int, margin: float = 0.3) -> np.ndarray:
    """``[H, W]`` bool: the box around the 68-point layout's lip points, widened on every side
    by ``margin`` x the mouth width (the "lip region" of paper 000 table 2's lip error)."""
    lips = np.asarray(landmarks, np.float64)[MOUTH]
    lo, hi = lips.min(0), lips.max(0)
    pad = margin * (hi[0] - lo[0])
    return _box_mask(lo - pad, hi + pad, height, width)


def _box_mask(lo, hi, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool, True inside the pixel box from ``lo`` to ``hi`` (x, y), clipped."""
    x0, y0 = np.floor(np.maximum(lo, 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(hi, [width, height])).astype(int)
    box = np.zeros((height, width), bool)
    box[y0:y1, x0:x1] = True
    return box


NOSE_TIP, OUTER_EYE_CORNERS = 33, (36, 45)  # iBUG-68 points that the jaw does not move


def motion_box(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W]`` bool: a box over the mouth and chin fixed to the head, not to the lips.

    Anchored at the nose tip and sized by the outer-eye-corner distance ``d`` (x within
    ±0.45 d of the nose tip, y from 0.1 d to 0.8 d below it), so it moves with the head only:
    a box around the true lip points would grow as the true jaw opens and make a static render's
    brightness in it follow the truth.
    """
    points = np.asarray(landmarks, np.float64)
    nose = points[NOSE_TIP]
    d = float(np.linalg.norm(points[OUTER_EYE_CORNERS[1]] - points[OUTER_EYE_CORNERS[0]]))
    return _box_mask(nose + [-0.45 * d, 0.1 * d], nose + [0.45 * d, 0.8 * d], height, width)


def heldout_codes(setup: NeRFSetup, tables, identity: int) -> dict[str, jax.Array]:
    """Codes of a held-out frame of ``identity``: its ``id`` / ``al``; ``ex`` the mean training
    expression (the frame has none of its own: the mouth follows F_lip); ``ill`` zero (to be
    fitted, :func:`fit_illumination`)."""
    base = {}
    for name, (_, dim) in setup.code_sizes.items():
        if name in ("id", "al"):
            base[name] = tables[name][...][identity][None]
        elif name == "ex":
            base[name] = jnp.mean(tables[name][...], axis=0, keepdims=True)
        else:
            base[name] = jnp.zeros((1, dim), jnp.float32)
    return base


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 1e-12 else 0.0


def mouth_darkness(image: np.ndarray, box: np.ndarray, fraction: float = 0.7) -> float:
    """How open the mouth in ``box`` looks: the mean shortfall of the pixels' luminance below
    ``fraction`` x the box's median luminance (the skin), relative to that level; 0 when nothing
    is darker. The open mouth's interior is far darker than the skin around it, and the measure
    is relative to the skin's own brightness, so head pose and lighting (which scale the whole
    box) barely move it: on the synthetic held-out sentences the truth's follows the true jaw
    opening at r = 0.95 per sentence (the box's plain mean brightness: 0.81, and a static render's
    mean brightness follows the truth's at 0.3 through head pose alone)."""
    luma = np.asarray(image, np.float64)[box] @ np.array([0.299, 0.587, 0.114])
    level = fraction * float(np.median(luma)) if luma.size else 0.0
    if level <= 1e-6:
        return 0.0
    return float(np.mean(np.maximum(level - luma, 0.0)) / level)


def lip_region_frame(
    pred, truth, landmarks, opening: float | None = None
) -> tuple[float, float, float, float, float]:
    """One frame ``[H, W, 3]``: ``(mse, l1)`` in its :func:`mouth_box` (the true lip landmarks
    ``[68, 2]``), the rendered and the true :func:`mouth_darkness` in its head-fixed
    :func:`motion_box`, and the frame's true mouth opening (``opening``: the synthetic data's
    jaw parameter; NaN when unknown, as for real videos)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    box = mouth_box(landmarks, *truth.shape[:2])
    diff = (pred - truth)[box]
    still = motion_box(landmarks, *truth.shape[:2])
    return (
        float(np.mean(np.square(diff))),
        float(np.mean(np.abs(diff))),
        mouth_darkness(pred, still),
        mouth_darkness(truth, still),
        float("nan") if opening is None else float(opening),
    )


OPEN_JAW = 0.5  # jaw parameter of the synthetic generator from which a frame counts as open


def lip_region_summary(sequences) -> dict[str, float]:
    """The lip-region scores of held-out sequences, each a list of :func:`lip_region_frame`
    tuples: ``mouth_psnr`` / ``mouth_l1`` (mean over frames) and ``mouth_motion_r``, the Pearson
    correlation over a sequence's frames of the rendered :func:`mouth_darkness` with the true
    mouth opening (the jaw parameter where the frames carry it, ``mouth_motion_reference =
    "jaw_open"``; else the true frames' darkness, ``"truth"``), averaged over sequences of > 2
    frames: 1 when the rendered mouth opens and closes with the true one, ~0 when it does not
    move with it. ``mouth_motion_r_truth``: the same for the true frames against the jaw
    parameter (the measure's ceiling; synthetic data only). ``mouth_psnr_open``: the lip PSNR
    over the frames whose true jaw opening is at least :data:`OPEN_JAW` (``open_frames`` of
    them): a mouth that never opens is right on the many near-closed frames and wrong only on
    these."""
    frames = [f for seq in sequences for f in seq]
    if not frames:
        return {}
    seqs = [np.asarray(seq, np.float64) for seq in sequences if len(seq) > 2]
    jaw = bool(seqs) and all(np.isfinite(seq[:, 4]).all() for seq in seqs)
    reference = 4 if jaw else 3
    motion = [_correlation(seq[:, 2], seq[:, reference]) for seq in seqs]
    out = {
        "mouth_psnr": float(np.mean([psnr(max(f[0], 1e-10)) for f in frames])),
        "mouth_l1": float(np.mean([f[1] for f in frames])),
        "mouth_motion_r": float(np.mean(motion)) if motion else float("nan"),
        "mouth_motion_reference": "jaw_open" if jaw else "truth",
    }
    if jaw:
        out["mouth_motion_r_truth"] = float(
            np.mean([_correlation(seq[:, 3], seq[:, 4]) for seq in seqs])
        )
        opened = [f for f in frames if f[4] >= OPEN_JAW]
        if opened:
            out["mouth_psnr_open"] = float(np.mean([psnr(max(f[0], 1e-10)) for f in opened]))
            out["open_frames"] = len(opened)
    return out


def evaluate_split(setup, graphdefs, params, source, *, fit_steps: int, batch: int, samples=None):
    """PSNR / SSIM over the frames of ``source`` (held-out sentences or views), and the lip
    region (:func:`lip_region_summary`)."""
    render = render_fn(graphdefs)
    codes_def = graphdefs[1]
    tables = nnx.merge(codes_def, params["codes"]).tables
    keys = frame_keys(setup)
    psnrs, ssims, lips = [], [], []
    ssim_fn = jax.jit(jax.vmap(ssim))
    shown = []
    for rows in source.sequence_rows():
        first = {k: jnp.asarray(np.stack([source[int(rows[0])][k]])) for k in keys}
        n = len(rows)
        identity = int(first["identity"][0])
        base = heldout_codes(setup, tables, identity)
        if "ill" in base and fit_steps > 0:
            base["ill"] = fit_illumination(render, params, first, base, fit_steps)
        scored = rows[1:] if (fit_steps > 0 and n > 1 and "ill" in base) else rows
        codes = {k: jnp.repeat(v, batch, axis=0) for k, v in base.items()}
        lips.append([])
        for start in range(0, len(scored), batch):
            chunk = scored[start : start + batch]
            # Pad the last chunk to the batch size: one compiled shape for every call.
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk))])
            items = [source[int(r)] for r in padded]
            frames = {k: jnp.asarray(np.stack([item[k] for item in items])) for k in keys}
            out = render(params, frames, codes)
            mse = jnp.mean(jnp.square(out["image"] - frames["image"]), axis=(1, 2, 3))
            psnrs.extend(np.asarray(psnr(mse))[: len(chunk)].tolist())
            ssims.extend(np.asarray(ssim_fn(out["image"], frames["image"]))[: len(chunk)].tolist())
            pred, truth = np.asarray(out["image"]), np.asarray(frames["image"])
            for j in range(len(chunk)):
                opening = items[j]["expression"][0] if "expression" in items[j] else None
                lips[-1].append(lip_region_frame(pred[j], truth[j], items[j]["landmarks"], opening))
            if samples is not None and len(shown) < 4:
                shown.append((pred[0], truth[0]))
    if samples is not None and shown:
        _save_grid(samples, shown)
    return {
        "psnr": float(np.mean(psnrs)),
        "ssim": float(np.mean(ssims)),
        **lip_region_summary(lips),
        "frames": len(psnrs),
    }


def evaluate_run(config, setup, graphdefs, params, workdir=None, splits=None):
    """PSNR / SSIM (+ lip region) on the held-out splits: ``config.eval.splits`` when set, else
    held-out sentences (``val``) and views (``val_views``)."""
    if splits is None:
        splits = tuple(config.eval.get("splits", ("val", "val_views")))
    results = {}
    for split in splits:
        source = load_frames(config, split)
        results[split] = evaluate_split(
            setup, graphdefs, params, source,
            fit_steps=int(config.eval.fit_steps), batch=int(config.eval.batch_size),
            samples=None if workdir is None
            else pathlib.Path(workdir) / "samples" / f"eval_{split}.png",
        )  # fmt: skip
    return results


def _save_grid(path: pathlib.Path, pairs) -> None:
    from PIL import Image

    rows = [np.concatenate([pred, gt], axis=1) for pred, gt in pairs]
    grid = np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)


def make_setup(config: ml_collections.ConfigDict):
    """``(setup, graphdefs, train_frames)`` of a NeRF config: shapes, module graphs, data."""
    train_frames = load_frames(config, "train")
    audio_dim = int(train_frames[0]["audio"].shape[-1])
    sync_dim = int(train_frames.lip.shape[1]) if isinstance(train_frames, LipFrames) else 0
    model_config = model_config_from(config, audio_dim, sync_dim)
    sizes = {"id": train_frames.num_identities, "al": train_frames.num_identities,
             "ill": train_frames.num_sequences, "ex": len(train_frames)}  # fmt: skip
    code_sizes = {
        name: (sizes[name], int(dim)) for name, dim in config.model.codes.items() if dim > 0
    }
    setup = NeRFSetup(
        model_config, code_sizes, len(train_frames), int(config.seed),
        lip="sync" if sync_dim else ("audio_net" if model_config.audio_net else "none"),
        disentangle=bool(_init_from(config, "disentangle")),
    )  # fmt: skip
    nerf, codes = build_models(setup, config.seed)
    return setup, (nnx.graphdef(nerf), nnx.graphdef(codes)), train_frames


def build_task(
    config: ml_collections.ConfigDict, mesh, workdir: str | pathlib.Path | None = None
) -> loop.Task:
    """The NeRF stage as a :class:`jaxhead.train.loop.Task` (``workdir`` receives sample images)."""
    setup, graphdefs, train_frames = make_setup(config)
    tx = make_optimizer(config.optim, config.train.steps)
    weights = config.loss
    kind, message = perceptual_loss_choice(config.loss.vgg_weights)
    print(message, flush=True)  # said once per run: which perceptual loss this run uses
    constants = {}
    vgg_graphdef = None
    if kind == "vgg16":
        vgg_graphdef, constants["vgg"] = nnx.split(load_vgg16(config.loss.vgg_weights))
    if setup.lip == "sync":
        print(f"F_lip: the sync stage of {_init_from(config, 'sync')} (frozen).", flush=True)
    if setup.disentangle:
        constants["ref"] = reference_codes(config, setup, train_frames)
        print(
            f"L_dis (weight {weights.dis}): reference codes from the extractor of "
            f"{_init_from(config, 'disentangle')}.",
            flush=True,
        )

    def init_fn():
        nerf, codes = build_models(setup, config.seed)
        params = {
            "nerf": nnx.to_pure_dict(nnx.state(nerf, nnx.Param)),
            "codes": nnx.to_pure_dict(nnx.state(codes, nnx.Param)),
        }
        if setup.disentangle and bool(config.disentangle.init_codes):
            # Paper 000: the extractor's codes initialise the learnable ones.
            params["codes"]["tables"] = {k: jnp.asarray(v) for k, v in constants["ref"].items()}
        return TrainState.create(params, tx)

    pipeline = make_pipeline(
        train_frames,
        batch_size=int(config.data.batch_size),
        seed=int(config.seed),
        num_threads=int(config.data.num_threads),
        data_axis_size=mesh.shape["data"],
    )
    keys = frame_keys(setup)

    def evaluate(state):
        params = jax.device_get(state.params)
        results = evaluate_run(config, setup, graphdefs, params, workdir)
        results["train_frames"] = len(train_frames)
        if workdir is not None:
            # A held-out sentence beside its ground truth, with its audio: what a person looks at.
            from jaxhead.nerf import render_video

            trained = render_video.Trained(
                config, setup, graphdefs, params, train_frames, int(state.step)
            )
            path = pathlib.Path(workdir) / "samples" / "heldout_0.mp4"
            render_video.write_heldout_video(trained, 0, path)
            results["video"] = str(path.relative_to(workdir))
        return results

    def write_samples(state, step, samples_dir):
        params = jax.device_get(state.params)
        source = load_frames(config, str(config.eval.get("splits", ("val",))[0]), progress=False)
        rows = source.sequence_rows()[0][:2]
        sub = _Subset(source, rows)
        evaluate_split(
            setup, graphdefs, params, sub, fit_steps=0, batch=2,
            samples=samples_dir / f"step_{step:06d}.png",
        )  # fmt: skip

    return loop.Task(
        init_fn=init_fn,
        train_step=make_train_step(setup, graphdefs, tx, weights, vgg_graphdef),
        data=_Batches(pipeline, keys),
        evaluate=evaluate,
        write_samples=write_samples,
        constants=constants or None,
    )


class _Subset:
    def __init__(self, source, rows):
        self._source, self._rows = source, np.asarray(rows)

    def __getitem__(self, i):
        return self._source[int(i)]

    def sequence_rows(self):
        return [self._rows]


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Trains (or resumes) the NeRF stage in ``workdir``; see ``configs/voca.py``."""
    return loop.train(config, workdir, functools.partial(build_task, workdir=workdir))
