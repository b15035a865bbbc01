"""The embedded default dataset: procedural talking heads written in VOCASET's file format.

    python -m jaxhead.data.synthetic --out data/synthetic_voca [--identities 4] [--sequences 4] \
        [--seconds 4] [--seed 0]

writes, deterministically from the seed, the four files of VOCASET's training data exactly as the
real download has them, so one reader (:mod:`jaxhead.data.voca`) serves both:

* ``data_verts.npy``: float32 ``[num_frames, V, 3]`` registered meshes at 60 fps, in metres;
* ``templates.pkl``: ``{subject: [V, 3]}`` neutral meshes;
* ``raw_audio_fixed.pkl``: ``{subject: {sentence: {"audio": int16 [n], "sample_rate": 22000}}}``;
* ``subj_seq_to_idx.pkl``: ``{subject: {sentence: {frame: row}}}``, frames counted from 0;

plus ``factors.npz``, the ground truth behind every row of ``data_verts`` (see :data:`FACTORS_DOC`)
with the mesh faces, per-subject vertex albedo and the 68 landmark vertex indices.

Head pose. As in VOCASET, whose registered meshes have the global head motion removed,
``data_verts`` holds the unposed head (jaw, lips and eyelids move; the skull does not). The head
pose is a factor (``head_rotation`` axis-angle, ``head_translation``); the renderer applies it
(``world = R v + t``) and the NeRF stage sees it as camera motion,
:func:`jaxhead.data.head_model.camera_in_head_frame`. Lighting (SH coefficients) is per sentence
and lives in the world frame, so it is fixed while the head moves.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import shutil
import tempfile
import time

import numpy as np

from jaxhead.data import head_model, raster, speech
from jaxhead.data.cache import cache_root
from jaxhead.files import publish
from jaxhead.train import cli

__all__ = ["generate", "FACTORS_DOC", "FPS", "SAMPLE_RATE", "main"]

FPS = 60  # VOCASET's capture rate
SAMPLE_RATE = 22_000  # VOCASET's raw audio rate
CAMERA_DISTANCE = 0.6  # metres from the head centre: default world camera for rendering
CAMERA_FOV_DEG = 22.0  # its horizontal field of view; the head fills ~2/3 of the frame

FACTORS_DOC = """factors.npz, one row per data_verts row unless noted:
  subject_names [S] str, sentence_names [Q] str       names used in the pickles
  subject [N] int, sentence [N] int, frame [N] int     row -> (subject, sentence, frame) indices
  shape [N, 10]           identity shape parameters (head_model.SHAPE_NAMES)
  albedo [N, 8]           albedo parameters (head_model.ALBEDO_NAMES)
  illumination [N, 9, 3]  SH irradiance coefficients in the world frame (raster.sh_basis order)
  jaw_open, lip_round, blink [N]   expression in [0, 1]; expression [N, 3] stacks them
  head_rotation [N, 3]    axis-angle (radians), head_translation [N, 3] (metres): world = R v + t
  phoneme [N] int         index into phoneme_names of the sound at the frame's time
  vertex_albedo [S, V, 3] per-vertex albedo of each subject in [0, 1]
  faces [F, 3] int        triangles shared by all subjects
  landmark_indices [68]   vertex indices, 68-point layout (48-67 mouth, 36-47 eyes)
  fps, sample_rate, lip_lead_s, camera_distance, camera_fov_deg  scalars
"""


def _subject_names(rng: np.random.Generator, count: int) -> list[str]:
    """VOCASET-style names: ``FaceTalk_<yymmdd>_<5 digits>_TA``, distinct and sorted."""
    names: set[str] = set()
    while len(names) < count:
        day = (
            f"1707{rng.integers(10, 32):02d}"
            if rng.random() < 0.5
            else f"1709{rng.integers(1, 31):02d}"
        )
        names.add(f"FaceTalk_{day}_{rng.integers(0, 4000):05d}_TA")
    return sorted(names)


def _lighting(rng: np.random.Generator) -> np.ndarray:
    """``[9, 3]`` SH coefficients: ambient + one frontal-ish key light of random colour."""
    direction = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.2, 0.8), 1.0])
    warmth = rng.uniform(-0.08, 0.08)
    intensity = rng.uniform(0.45, 0.75)
    color = intensity * np.array([1.0 + warmth, 1.0, 1.0 - warmth])
    ambient = rng.uniform(0.3, 0.5) * np.array([1.0 - warmth, 1.0, 1.0 + warmth])
    return raster.sh_from_lights(ambient, direction, color)


def generate(
    out_dir: str | os.PathLike,
    identities: int = 4,
    sequences: int = 4,
    seconds: float = 4.0,
    seed: int = 0,
    *,
    mesh_rows: int = 36,
    mesh_cols: int = 48,
    lip_lead: float = 0.06,
    overwrite: bool = False,
    progress: bool = False,
) -> pathlib.Path:
    """Write a synthetic VOCASET-format dataset to ``out_dir`` (atomically) and return its path.

    Args:
      out_dir: folder to create; must not exist or be empty unless ``overwrite``.
      identities: number of subjects.
      sequences: sentences per subject.
      seconds: length of each sentence.
      seed: everything (shapes, albedo, speech, lighting, blinks, pose) derives from it.
      mesh_rows, mesh_cols: head mesh resolution (:func:`head_model.build_topology`).
      lip_lead: seconds by which the mouth leads the sound.
      overwrite: replace an existing non-empty ``out_dir``.
      progress: show a progress bar.
    """
    if identities < 1 or sequences < 1 or not seconds >= 1.0:
        raise ValueError(
            f"need --identities >= 1, --sequences >= 1 and --seconds >= 1; got {identities}, "
            f"{sequences}, {seconds}"
        )
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"--out {out_dir} is a file; choose a folder for the dataset")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"--out {out_dir} exists and is not empty; choose another --out, or pass --overwrite "
            "(overwrite=True from Python) to replace it"
        )
    root_rng = np.random.default_rng(seed)
    # Independent streams per purpose, so e.g. changing the speech does not change the faces.
    id_seed, speech_seed, light_seed, blink_seed, pose_seed = root_rng.integers(0, 2**31, 5)
    topology = head_model.build_topology(mesh_rows, mesh_cols)
    id_rng = np.random.default_rng(id_seed)
    subjects = _subject_names(id_rng, identities)
    sentences = [f"sentence{k + 1:02d}" for k in range(sequences)]
    num_frames = int(round(seconds * FPS))
    times = np.arange(num_frames) / FPS
    total = identities * sequences * num_frames
    num_v = topology.num_vertices

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        verts = np.lib.format.open_memmap(
            tmp / "data_verts.npy", mode="w+", dtype=np.float32, shape=(total, num_v, 3)
        )
        factors = {
            k: np.zeros(shape, dtype)
            for k, shape, dtype in [
                ("subject", (total,), np.int32),
                ("sentence", (total,), np.int32),
                ("frame", (total,), np.int32),
                ("shape", (total, head_model.NUM_SHAPE), np.float32),
                ("albedo", (total, head_model.NUM_ALBEDO), np.float32),
                ("illumination", (total, 9, 3), np.float32),
                ("expression", (total, 3), np.float32),
                ("head_rotation", (total, 3), np.float32),
                ("head_translation", (total, 3), np.float32),
                ("phoneme", (total,), np.int32),
            ]
        }
        vertex_albedo = np.zeros((identities, num_v, 3), np.float32)
        templates, audio_dict, index = {}, {}, {}
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=identities * sequences, desc="synthetic VOCASET", unit="seq")
        row = 0
        for s, subject in enumerate(subjects):
            shape = head_model.sample_shape(id_rng)
            albedo = head_model.sample_albedo(id_rng)
            f0 = id_rng.uniform(90.0, 220.0)
            gain = id_rng.uniform(0.8, 1.1)
            template = head_model.neutral_vertices(topology, shape)
            templates[subject] = template
            vertex_albedo[s] = head_model.vertex_albedo(topology, albedo)
            audio_dict[subject], index[subject] = {}, {}
            for q, sentence in enumerate(sentences):
                seq_key = [s, q]
                speech_rng = np.random.default_rng([speech_seed, *seq_key])
                timeline = speech.sample_timeline(speech_rng, seconds)
                audio = speech.synthesize(timeline, speech_rng, SAMPLE_RATE, f0)
                mouth = speech.mouth_trajectory(timeline, times, lip_lead, gain)
                blink = speech.blink_trajectory(
                    np.random.default_rng([blink_seed, *seq_key]), times
                )
                rotation, translation = speech.head_motion(
                    np.random.default_rng([pose_seed, *seq_key]), times
                )
                sh = _lighting(np.random.default_rng([light_seed, *seq_key]))
                expression = np.concatenate([mouth, blink[:, None]], -1)
                rows = slice(row, row + num_frames)
                verts[rows] = head_model.animate(topology, template, expression)
                factors["subject"][rows] = s
                factors["sentence"][rows] = q
                factors["frame"][rows] = np.arange(num_frames)
                factors["shape"][rows] = shape
                factors["albedo"][rows] = albedo
                factors["illumination"][rows] = sh
                factors["expression"][rows] = expression
                factors["head_rotation"][rows] = rotation
                factors["head_translation"][rows] = translation
                factors["phoneme"][rows] = timeline.at(times)
                pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
                audio_dict[subject][sentence] = {"audio": pcm, "sample_rate": SAMPLE_RATE}
                index[subject][sentence] = {f: row + f for f in range(num_frames)}
                row += num_frames
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        verts.flush()
        del verts
        # Protocol 2: the real files are Python 2 pickles; this keeps ours readable by old tools.
        for name, obj in [
            ("templates.pkl", templates),
            ("raw_audio_fixed.pkl", audio_dict),
            ("subj_seq_to_idx.pkl", index),
        ]:
            with open(tmp / name, "wb") as f:
                pickle.dump(obj, f, protocol=2)
        expr = factors.pop("expression")
        np.savez(
            tmp / "factors.npz",
            subject_names=np.array(subjects),
            sentence_names=np.array(sentences),
            expression=expr,
            jaw_open=expr[:, 0],
            lip_round=expr[:, 1],
            blink=expr[:, 2],
            phoneme_names=np.array(list(speech.PHONEMES)),
            vertex_albedo=vertex_albedo,
            faces=topology.faces,
            landmark_indices=topology.landmark_indices,
            fps=np.float32(FPS),
            sample_rate=np.int32(SAMPLE_RATE),
            lip_lead_s=np.float32(lip_lead),
            camera_distance=np.float32(CAMERA_DISTANCE),
            camera_fov_deg=np.float32(CAMERA_FOV_DEG),
            **factors,
        )
        if out_dir.exists():
            shutil.rmtree(out_dir)
        publish(tmp, out_dir)  # mkdtemp's 0700 becomes the user's usual folder mode
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --- the one cached root and the one split policy, for every stage ---------------------------

DEFAULT_MESH = (36, 48)


def synthetic_root(
    synthetic, cache_dir: str = "", *, mesh: tuple[int, int] = DEFAULT_MESH, progress: bool = True
) -> pathlib.Path:
    """The synthetic dataset of a config's ``synthetic`` block (identities, sequences, seconds,
    seed), generated once into the cache (:func:`jaxhead.data.cache.cache_root` of
    ``cache_dir``) and shared by every stage that reads the same block: the NeRF frames, the
    sync stage, the landmark autoencoder, the GP-VAE (which only needs the factors and audio and
    asks for a coarse ``mesh``; the factors, audio and sentences do not depend on the mesh)."""
    s = synthetic
    name = f"synthetic_i{s.identities}_q{s.sequences}_s{float(s.seconds):g}_seed{s.seed}"
    if tuple(mesh) != DEFAULT_MESH:
        name += f"_mesh{mesh[0]}x{mesh[1]}"
    root = cache_root(cache_dir) / name
    if not (root / "data_verts.npy").exists():
        if progress:
            print(
                f"Generating the synthetic VOCASET-format dataset into {root} (once).", flush=True
            )
        generate(
            root, identities=int(s.identities), sequences=int(s.sequences),
            seconds=float(s.seconds), seed=int(s.seed), mesh_rows=int(mesh[0]),
            mesh_cols=int(mesh[1]), overwrite=root.exists(), progress=progress,
        )  # fmt: skip
    return root


def split(
    sentences: dict[str, list[str]], heldout_sentences: int, heldout_subjects: int = 0
) -> dict[str, list[tuple[str, str]]]:
    """The one held-out policy of the synthetic (and VOCASET-format) data, for every stage.

    Subjects and their sentences in sorted order; the last ``heldout_subjects`` subjects are
    held out whole (``heldout_subjects``: every sentence); every other subject's last
    ``heldout_sentences`` sentences are held out (``heldout_sentences``) and the rest is
    ``train``. Stages that read the same data with the same counts hold out the same
    (subject, sentence) pairs; a stage that holds out more (the sync stage's unseen speakers)
    holds out a superset, so nothing held out from the NeRF is training data anywhere.
    """
    subjects = sorted(sentences)
    if heldout_subjects < 0 or heldout_sentences < 0:
        raise ValueError("held-out counts must be >= 0")
    if heldout_subjects >= len(subjects) and subjects:
        raise ValueError(
            f"{len(subjects)} subjects cannot hold out {heldout_subjects} whole subjects"
        )
    kept = subjects[: len(subjects) - heldout_subjects]
    out: dict[str, list[tuple[str, str]]] = {
        "train": [], "heldout_sentences": [], "heldout_subjects": [],
    }  # fmt: skip
    for subject in kept:
        sents = sorted(sentences[subject])
        if heldout_sentences >= len(sents):
            raise ValueError(
                f"{subject} has {len(sents)} sentences, too few to hold out {heldout_sentences}"
            )
        cut = len(sents) - heldout_sentences
        out["train"] += [(subject, q) for q in sents[:cut]]
        out["heldout_sentences"] += [(subject, q) for q in sents[cut:]]
    for subject in subjects[len(kept) :]:
        out["heldout_subjects"] += [(subject, q) for q in sorted(sentences[subject])]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m jaxhead.data.synthetic",
        description="Write the procedural multi-speaker talking-head dataset in VOCASET's format.",
    )
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--identities", type=int, default=4)
    parser.add_argument("--sequences", type=int, default=4, help="sentences per identity")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each sentence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = generate(
        args.out,
        args.identities,
        args.sequences,
        args.seconds,
        args.seed,
        overwrite=args.overwrite,
        progress=True,
    )
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"wrote {path} ({size:.1f} MiB) in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    cli.run_plain(main)
