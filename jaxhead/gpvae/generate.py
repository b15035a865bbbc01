"""Generating head pose and blinks with a trained GP-VAE (paper 001 §3.4): the jitted
:class:`Generator`, loading a run, and :func:`generate_pose_blink` (what ``--pose_from gpvae``
renders with)."""

from __future__ import annotations

import functools
import os
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from jaxhead.audio.io import load_audio
from jaxhead.gpvae import data as data_lib
from jaxhead.gpvae import models
from jaxhead.gpvae.step import (
    TRAIN_COMMAND,
    graphdef_of,
    init_state,
    model_spec,
    prior_covariance,
)
from jaxhead.train.optim import make_optimizer
from jaxhead.train.restore import restore_run


class Generator:
    """Jitted pieces of generation for one config (model graph, window, BOP, prior)."""

    def __init__(self, config: ml_collections.ConfigDict, graphdef=None):
        self.spec = model_spec(config)
        self.window = int(config.data.window)
        self.bop = int(config.data.bop)
        self.fps = float(config.data.fps)
        self.prior_cov = prior_covariance(config)
        self.graphdef = graphdef or graphdef_of(self.spec)
        relative_pose = bool(config.model.get("relative_pose", False))  # older runs: absent
        anchor = str(config.model.get("pose_anchor", "mean"))

        @jax.jit
        def window_fn(params, audio, bop_frames, noise):
            model = nnx.merge(self.graphdef, params)
            return models.cme_window(model, audio, bop_frames, noise, relative_pose, anchor)

        @functools.partial(jax.jit, static_argnums=(2,))
        def prior_window(params, z, keep_from):
            return nnx.merge(self.graphdef, params).decode(z)[..., keep_from:, :]

        self._window_fn = window_fn
        self._prior_window = prior_window

    def from_audio(self, params, audio, bop, num_frames, key, noise_scale):
        """``[B, N, D]`` normalised frames from audio ``[B, N_a, A]`` and BOP ``[B, τ, D]``.

        ``noise_scale [B]``: 0 for the posterior mean, 1 for a sample (per row).
        """
        latent = self.spec.latent_dim

        def fn(win_audio, last, k):
            noise = jax.random.normal(
                jax.random.fold_in(key, k), (last.shape[0], latent, self.window)
            )
            noise = noise * jnp.asarray(noise_scale, jnp.float32)[:, None, None]
            return self._window_fn(params, win_audio, last, noise)

        return models.generate(fn, audio, bop, num_frames, self.window)

    def from_prior(self, params, batch, num_frames, key):
        """``[B, N, D]`` normalised frames sampled from the latent prior, without audio."""
        z = models.sample_prior_latents(
            self.prior_cov, batch, self.spec.latent_dim, max(num_frames, self.window), self.bop, key
        )
        num = z.shape[-1]
        starts = models.window_starts(num, self.window, self.bop)
        chunks = []
        for k, start in enumerate(starts):
            stop = min(start + self.window, num)
            chunk = z[..., max(stop - self.window, 0) : stop]  # full windows: few compilations
            keep = 0 if k == 0 else (start + self.bop) - (stop - self.window)
            chunks.append(self._prior_window(params, chunk, keep))
        return np.concatenate([np.asarray(c) for c in chunks], -2)[..., :num_frames, :]


def _resolve_workdir(path: pathlib.Path) -> tuple[pathlib.Path, int | None]:
    """A workdir, its ``checkpoints/`` folder or one ``checkpoints/<step>`` -> (workdir, step)."""
    for candidate, step in [(path, None), (path.parent, None), (path.parent.parent, path.name)]:
        if (candidate / "config.json").is_file() and (candidate / "checkpoints").is_dir():
            return candidate, (int(step) if step is not None and step.isdigit() else None)
    return path, None  # restore_run says what is missing


def load_state(workdir_or_checkpoint: str | os.PathLike):
    """``(config, generator, state)`` of a trained GP-VAE run (latest or the named checkpoint).

    Cached per (workdir, checkpoint step): repeated calls reuse the restored state and the
    compiled generator.
    """
    workdir, step = _resolve_workdir(pathlib.Path(workdir_or_checkpoint).expanduser())
    if step is None and (workdir / "checkpoints").is_dir():
        steps = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
        step = max(steps) if steps else None
    return _load_state(workdir.resolve(), step)


@functools.lru_cache(maxsize=4)
def _load_state(workdir: pathlib.Path, step: int | None):
    def abstract_state(config: ml_collections.ConfigDict):
        spec = model_spec(config)
        tx = make_optimizer(config.optim, int(config.train.steps))
        zeros = np.zeros(data_lib.FEATURE_DIM, np.float32)
        return jax.eval_shape(lambda: init_state(config, spec, tx, zeros, zeros))

    run = restore_run(
        workdir, "GP-VAE", TRAIN_COMMAND.format(workdir=workdir), abstract_state, step=step,
        keys=("finetune", "model.cme_depth"),
    )  # fmt: skip
    return run.config, Generator(run.config), run.state


def generate_pose_blink(
    workdir_or_checkpoint: str | os.PathLike,
    audio: str | os.PathLike | np.ndarray | None = None,
    num_frames: int | None = None,
    fps: float = 25.0,
    seed: int = 0,
    bop: np.ndarray | None = None,
    bop_fps: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Head pose and blink for ``num_frames`` video frames from a trained GP-VAE.

    Args:
      workdir_or_checkpoint: a GP-VAE workdir (latest checkpoint) or one ``checkpoints/<step>``.
      audio: an audio file (any format :func:`jaxhead.audio.io.load_audio` reads), a mono
        waveform ``[n]`` at 16 kHz, per-frame features ``[N, 52]`` at the model's frame rate
        (:func:`jaxhead.gpvae.data.audio_frame_features`), or None to sample the prior.
      num_frames: frames wanted at ``fps``; default: the audio's duration (required without
        audio).
      fps: frame rate of the output; generation runs at the model's rate (25) and is linearly
        resampled.
      seed: the sample drawn (the same seed gives the same sequence).
      bop: ``[M, 7]`` frames to start from (pose then blink, at ``bop_fps``, default the model's
        frame rate); the first ``τ`` frames at the model's rate are the BOP (``M`` must reach
        them); default: the first frames of a prior sample drawn from ``seed``.
      bop_fps: frame rate of ``bop`` (it is linearly resampled to the model's).

    Returns:
      ``(pose [N, 6], blink [N])`` float32: axis-angle rotation (rad) then translation, in the
      training data's frame and units (with ``model.relative_pose``, continuing from the BOP's
      mean or last pose, ``model.pose_anchor``); blink closure (about 0 open, 1 shut).
    """
    config, gen, state = load_state(workdir_or_checkpoint)
    model_fps = gen.fps
    key = jax.random.key(int(seed))
    mean, std = np.asarray(state.mean), np.asarray(state.std)
    features = None
    duration = None
    if audio is not None:
        if isinstance(audio, (str, os.PathLike)):
            wave, rate = load_audio(audio, 16_000)
            audio = np.asarray(wave, np.float32)
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            duration = len(audio) / 16_000
            n_model = max(int(np.ceil(duration * model_fps)), 1)
            features = data_lib.audio_frame_features(audio, 16_000, n_model, model_fps)
        elif audio.ndim == 2 and audio.shape[1] == data_lib.AUDIO_DIM:
            features = audio
            duration = len(audio) / model_fps
        else:
            raise ValueError(
                f"audio must be a file, a 16 kHz waveform [n] or features [N, {data_lib.AUDIO_DIM}]"
                f"; got an array of shape {audio.shape}"
            )
    if num_frames is None:
        if duration is None:
            raise ValueError("generate_pose_blink: give num_frames when there is no audio")
        num_frames = int(round(duration * fps))
    n_model = max(int(np.ceil(num_frames * model_fps / fps)), gen.bop + 1)
    if bop is None:
        start = np.asarray(gen.from_prior(state.params, 1, gen.window, jax.random.fold_in(key, 1)))
        bop_n = start[0, : gen.bop]
    else:
        bop = np.asarray(bop, np.float32)
        if bop.ndim == 2 and bop_fps is not None and float(bop_fps) != model_fps:
            bop = data_lib._resample_frames(bop, float(bop_fps), model_fps)
        if bop.ndim != 2 or bop.shape[1] != data_lib.FEATURE_DIM or len(bop) < gen.bop:
            raise ValueError(
                f"bop must be [M >= {gen.bop}, {data_lib.FEATURE_DIM}] at the model's "
                f"{model_fps:g} fps, got {bop.shape}"
            )
        bop_n = (bop[: gen.bop] - mean) / std
    if features is None:
        out = gen.from_prior(state.params, 1, n_model, jax.random.fold_in(key, 2))
    else:
        out = gen.from_audio(
            state.params, jnp.asarray(features)[None], jnp.asarray(bop_n)[None], n_model,
            jax.random.fold_in(key, 2), np.ones(1),
        )  # fmt: skip
    frames = np.asarray(out[0]) * std + mean
    frames = data_lib._resample_frames(frames, model_fps, fps)
    if len(frames) < num_frames:
        frames = np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), 0)])
    frames = frames[:num_frames].astype(np.float32)
    return frames[:, :6], frames[:, 6]
