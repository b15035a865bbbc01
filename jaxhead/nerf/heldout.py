"""The held-out protocol of the NeRF stage: one definition, used by the evaluation during training
(:mod:`jaxhead.nerf.stage`) and by the metric suite (:mod:`jaxhead.nerf.evaluate`).

Frames of a held-out sentence (or of a video's held-out end) have no expression code of their own
and their sequence has no illumination code: :func:`heldout_codes` gives them their identity's
``C_id`` / ``C_al``, the mean training ``C_ex`` (the mouth follows F_lip) and a zero ``C_ill``,
which :func:`render_heldout` fits on the sequence's first frame with the network frozen (the
latent-optimisation protocol of GLO / NeRF-W); that frame is excluded from the scores
(:attr:`HeldOut.scored`). :func:`score_heldout` gives PSNR / SSIM (:mod:`jaxhead.eval.image`)
and the lip region (:mod:`jaxhead.eval.lip`) of the scored frames.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
import zipfile

import jax.numpy as jnp
import numpy as np
import tqdm
from PIL import Image

from jaxhead.data.cache import save_npz
from jaxhead.data.media import to_uint8
from jaxhead.data.video_frames import REGION_BODY, REGION_HEAD, REGION_NECK_BAND
from jaxhead.eval import image as image_lib
from jaxhead.eval.lip import lip_region_frame, lip_region_summary
from jaxhead.nerf.step import NeRFSetup, Renderer

RENDER_KEYS = ("c2w", "intrinsics", "blink")  # plus "audio" or "lip": the audio conditioning


def render_keys(setup: NeRFSetup) -> tuple[str, ...]:
    """The frame entries the renderer reads: camera, blink and the audio conditioning."""
    return RENDER_KEYS + (("lip",) if setup.lip == "sync" else ("audio",))


def static_frames(setup: NeRFSetup, source, count: int) -> dict[str, np.ndarray]:
    """What every rendered frame of ``source`` shares: a full-frame run's static background,
    as a ``[count, H, W, 3]`` view of the one image (no copies); else nothing."""
    if not setup.full_frame:
        return {}
    background = np.asarray(source.background, np.float32)
    return {"background": np.broadcast_to(background, (count,) + background.shape)}


def heldout_codes(setup: NeRFSetup, tables: dict, identity: int) -> dict[str, np.ndarray]:
    """``[1, dim]`` codes of a held-out frame of ``identity``: its ``id`` / ``al``; ``ex`` the
    mean training expression (the frame has none of its own: the mouth follows F_lip); ``ill``
    zero (to be fitted on the sequence's first frame). ``tables``: ``{name: [rows, dim]}``."""
    base = {}
    for name, (_, dim) in setup.code_sizes.items():
        if name in ("id", "al"):
            base[name] = np.asarray(tables[name][identity][None], np.float32)
        elif name == "ex":
            base[name] = np.asarray(np.mean(tables[name], axis=0, keepdims=True), np.float32)
        else:
            base[name] = np.zeros((1, dim), np.float32)
    return base


def render_frames(
    renderer: Renderer,
    params,
    frames: dict,
    codes: dict,
    batch: int = 8,
    progress: bool = False,
    timing: list | None = None,
) -> np.ndarray:
    """``[T, H, W, 3]`` renders of ``frames`` (stacked :func:`render_keys` arrays) with per-frame
    ``codes`` (``{name: [T, dim]}``), ``batch`` frames per call: the last chunk is padded to the
    batch size, so every call has one compiled shape. ``timing`` receives ``(frames, seconds)``
    per call, from the host's arrays to the images on the host (:func:`frames_per_second`)."""
    total = len(frames["c2w"])
    out = []
    starts = range(0, total, batch)
    for start in tqdm.tqdm(starts, desc="render", leave=False, disable=not progress):
        began = time.perf_counter()
        idx = np.arange(start, min(start + batch, total))
        idx = np.concatenate([idx, np.repeat(idx[-1:], batch - len(idx))])
        chunk = {k: jnp.asarray(v[idx]) for k, v in frames.items()}
        chunk_codes = {k: jnp.asarray(v[idx]) for k, v in codes.items()}
        image = renderer(params, chunk, chunk_codes)["image"]
        out.append(np.asarray(image)[: min(batch, total - start)])
        if timing is not None:
            timing.append((len(out[-1]), time.perf_counter() - began))
    return np.concatenate(out)


def frames_per_second(timing: list) -> float:
    """Rendered frames per second of :func:`render_frames` calls ``[(frames, seconds)]``, the
    first call left out when there are others (it includes the compilation)."""
    steady = timing[1:] or timing
    seconds = sum(s for _, s in steady)
    return float(sum(n for n, _ in steady) / seconds) if seconds > 0 else float("nan")


@dataclasses.dataclass
class HeldOut:
    """One held-out sequence rendered with the held-out protocol.

    ``pred`` / ``truth``: ``[T, H, W, 3]`` in [0, 1]; ``scored``: ``[T]`` bool, False for the
    frame ``C_ill`` was fitted on; ``frames``: the conditioning rendered with
    (:func:`render_keys`); ``landmarks``: ``[T, 68, 2]`` true landmarks (pixels); ``openings``:
    ``[T]`` true jaw opening where the data has it (synthetic), else None; ``codes``: the codes
    rendered with (``[T, dim]``); ``render_fps``: frames rendered per second
    (:func:`frames_per_second`).
    """

    rows: np.ndarray
    pred: np.ndarray
    truth: np.ndarray
    scored: np.ndarray
    frames: dict
    landmarks: np.ndarray
    openings: np.ndarray | None
    codes: dict
    render_fps: float = float("nan")


def true_openings(data_kind: str, items: list[dict]) -> np.ndarray | None:
    """The frames' true jaw opening (``expression[0]`` of the synthetic generator's factors), or
    None where the data has none: videos, and VOCASET-format data without factors (whose
    expression entries are all zero)."""
    if data_kind != "voca" or not items or "expression" not in items[0]:
        return None
    values = np.asarray([item["expression"][0] for item in items], np.float64)
    return values if np.any(values != 0.0) else None


def render_heldout(
    renderer: Renderer,
    setup: NeRFSetup,
    params,
    tables: dict,
    source,
    rows: np.ndarray,
    *,
    fit_steps: int,
    batch: int,
    data_kind: str,
    replace: dict | None = None,
    cached: tuple[np.ndarray, float] | None = None,
) -> HeldOut:
    """Renders held-out ``rows`` (one sequence of ``source``) with the held-out protocol.

    ``replace``: per-frame arrays that replace the sequence's own (e.g. a generated pose's
    ``c2w`` and ``blink``), ``[T, ...]``. ``cached``: ``(pred, render_fps)`` of these rows
    rendered earlier with the same parameters (:func:`cached_render`): the frames are not
    rendered again.
    """
    rows = np.asarray(rows)
    items = [source[int(r)] for r in rows]
    base = heldout_codes(setup, tables, int(items[0]["identity"]))
    keys = render_keys(setup)
    fitted = "ill" in base and fit_steps > 0
    shared = static_frames(setup, source, len(rows))
    if fitted:
        first = {k: jnp.asarray(np.asarray(items[0][k])[None]) for k in keys + ("image",)}
        first.update({k: jnp.asarray(v[:1]) for k, v in shared.items()})
        codes = {k: jnp.asarray(v) for k, v in base.items()}
        base["ill"] = np.asarray(renderer.fit_illumination(params, first, codes, fit_steps))
    codes = {k: np.repeat(v, len(rows), 0).astype(np.float32) for k, v in base.items()}
    frames = {k: np.stack([item[k] for item in items]).astype(np.float32) for k in keys}
    frames.update(shared)
    for key, value in (replace or {}).items():
        frames[key] = np.asarray(value, np.float32)[: len(rows)]
    if cached is not None:
        pred, fps = cached
        if len(pred) != len(rows):
            raise ValueError(f"cached renders hold {len(pred)} frames for {len(rows)} rows")
    else:
        timing = []
        pred = render_frames(renderer, params, frames, codes, batch=batch, timing=timing)
        fps = frames_per_second(timing)
    truth = np.stack([item["image"] for item in items]).astype(np.float32)
    scored = np.ones(len(rows), bool)
    if fitted and len(rows) > 1:
        scored[0] = False
    landmarks = np.stack([item["landmarks"] for item in items]).astype(np.float32)
    openings = true_openings(data_kind, items)
    return HeldOut(rows, pred, truth, scored, frames, landmarks, openings, codes, fps)


def renders_path(workdir: str | pathlib.Path, split: str) -> pathlib.Path:
    """Where a run's final evaluation keeps the held-out renders of ``split``
    (:func:`save_renders`)."""
    return pathlib.Path(workdir) / "samples" / f"renders_{split}.npz"


def save_renders(path: str | pathlib.Path, held: list[HeldOut], step: int) -> pathlib.Path:
    """The renders of held-out sequences, as the 8-bit frames a video of them holds, with the
    training step they were rendered at: the metric suite and the held-out video of the same step
    read them (:func:`cached_render`) instead of rendering the frames again. Deflated: 250 frames
    at 512² take ~72 MB instead of 197 MB (~3 s to write)."""
    arrays = {"step": np.int64(step), "sequences": np.int64(len(held))}
    for i, h in enumerate(held):
        arrays[f"rows_{i}"] = np.asarray(h.rows, np.int64)
        arrays[f"pred_{i}"] = to_uint8(h.pred)
        arrays[f"render_fps_{i}"] = np.float64(h.render_fps)
    return save_npz(path, arrays, compress=True)


def cached_render(
    path: str | pathlib.Path, step: int, rows: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """``(pred [T, H, W, 3] float32 in [0, 1], render_fps)`` of ``rows`` from
    :func:`save_renders`'s file, or None where there is none for exactly these rows at ``step``
    (no file, another step, other rows, an unreadable file: the caller renders)."""
    try:
        with np.load(path) as saved:
            if int(saved["step"]) != int(step):
                return None
            for i in range(int(saved["sequences"])):
                if np.array_equal(saved[f"rows_{i}"], np.asarray(rows)):
                    pred = saved[f"pred_{i}"].astype(np.float32) / 255.0
                    return pred, float(saved[f"render_fps_{i}"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return None


def face_crop(images: np.ndarray, box) -> np.ndarray:
    """``[T, H, W, 3]`` -> the square ``box = (x0, y0, side)`` (clipped to the image)."""
    x0, y0, side = (int(v) for v in box)
    height, width = images.shape[1:3]
    return images[:, max(y0, 0) : min(y0 + side, height), max(x0, 0) : min(x0 + side, width)]


def region_psnr(pred: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """PSNR (dB) of the pixels where ``region`` ``[T, H, W]`` (bool) holds, over all frames;
    NaN when it holds nowhere."""
    if not region.any():
        return float("nan")
    mse = float(np.mean(np.square(pred[region] - truth[region])))
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def score_heldout(held: list[HeldOut], face_box=None, regions=None) -> dict:
    """PSNR / SSIM over the scored frames of held-out sequences (per-frame means,
    :func:`jaxhead.eval.image.image_metrics`) and their lip region
    (:func:`jaxhead.eval.lip.lip_region_summary`). ``face_box`` (full frames: the head crop's
    ``(x0, y0, side)``): also ``face_psnr`` / ``face_ssim`` on that crop of every frame, the
    region a head-crop run is scored on. ``regions`` (full frames: the source's per-row
    ``[N, H, W]`` :func:`jaxhead.data.video_frames.neck_regions`): ``neck_band_psnr`` on the
    head/neck boundary band and ``head_rest_psnr`` on the rest of the head, where a seam between
    head and torso would make the first far worse than the second; ``body_psnr`` on the rest of
    the neck and the torso, ``background_psnr`` outside the person. ``render_fps``: frames
    rendered per second over the sequences (their compilation left out)."""
    pred = np.concatenate([h.pred[h.scored] for h in held])
    truth = np.concatenate([h.truth[h.scored] for h in held])
    scores = image_lib.image_metrics(pred, truth)
    face = {}
    if face_box is not None:
        crop = image_lib.image_metrics(face_crop(pred, face_box), face_crop(truth, face_box))
        face = {"face_psnr": crop["psnr"], "face_ssim": crop["ssim"]}
    if regions is not None:
        where = np.concatenate([np.asarray(regions)[h.rows[h.scored]] for h in held])
        face["neck_band_psnr"] = region_psnr(pred, truth, where == REGION_NECK_BAND)
        face["head_rest_psnr"] = region_psnr(pred, truth, where == REGION_HEAD)
        face["body_psnr"] = region_psnr(pred, truth, where == REGION_BODY)
        face["background_psnr"] = region_psnr(pred, truth, where == 0)
    lips = [
        [
            lip_region_frame(
                h.pred[t], h.truth[t], h.landmarks[t],
                None if h.openings is None else h.openings[t],
            )
            for t in np.nonzero(h.scored)[0]
        ]
        for h in held
    ]  # fmt: skip
    return {
        "psnr": scores["psnr"],
        "ssim": scores["ssim"],
        **face,
        **lip_region_summary(lips),
        "frames": scores["frames"],
        "render_fps": float(np.mean([h.render_fps for h in held])),
    }


def save_grid(path: pathlib.Path, pairs) -> None:
    """Rendered | true image pairs, one pair per row, as one PNG."""
    rows = [np.concatenate([pred, gt], axis=1) for pred, gt in pairs]
    grid = np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).round().astype(np.uint8)).save(path)
