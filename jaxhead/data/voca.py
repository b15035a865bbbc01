"""VOCASET reader: registered meshes, templates, audio, and frame-aligned rendering.

Reads the four files of VOCASET's training data (the real download, or the synthetic default from
:mod:`jaxhead.data.synthetic`, which has the same format plus ``factors.npz``):

* ``data_verts.npy``: float32 ``[num_frames, V, 3]`` at 60 fps, opened as a read-only memmap;
* ``templates.pkl``: ``{subject: [V, 3]}``;
* ``raw_audio_fixed.pkl``: ``{subject: {sentence: {"audio": array, "sample_rate": int}}}``;
* ``subj_seq_to_idx.pkl``: ``{subject: {sentence: {frame: row}}}``.

Timing. Frame ``f`` of a sentence sits at ``(f - first_frame) / 60`` seconds of its audio. For a
target rate (the NeRF stage's 25 fps) :meth:`VocaSet.rows_at_fps` picks, for each target frame
time, the nearest captured frame; :func:`frame_sample_ranges` gives the audio samples that belong
to each target frame after resampling to 16 kHz.

Faces: ``factors.npz`` holds them for the synthetic set; for the real VOCASET pass the FLAME
template (``FLAME_sample.ply`` or ``texture_mesh.obj``) as ``template_mesh``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle

import numpy as np

from jaxhead.audio.io import SAMPLE_RATE, resample
from jaxhead.data import head_model, mesh_io, raster
from jaxhead.data.errors import (
    CorruptFileError,
    DatasetError,
    FeatureShapeError,
    MissingFileError,
    NonFiniteError,
)

__all__ = [
    "VOCA_FPS",
    "VOCA_SPLITS",
    "VocaSet",
    "load_voca",
    "split_by_subject",
    "split_by_sentence",
    "frame_sample_ranges",
]

VOCA_FPS = 60.0
_PRODUCED_BY = (
    "download VOCASET's training data, or run `python -m jaxhead.data.synthetic --out DIR`"
)
# The subject split of VOCA's training configuration (also used by FaceFormer and successors).
VOCA_SPLITS = {
    "train": (
        "FaceTalk_170728_03272_TA",
        "FaceTalk_170904_00128_TA",
        "FaceTalk_170725_00137_TA",
        "FaceTalk_170915_00223_TA",
        "FaceTalk_170811_03274_TA",
        "FaceTalk_170913_03279_TA",
        "FaceTalk_170904_03276_TA",
        "FaceTalk_170912_03278_TA",
    ),
    "val": ("FaceTalk_170811_03275_TA", "FaceTalk_170908_03277_TA"),
    "test": ("FaceTalk_170809_00138_TA", "FaceTalk_170731_00024_TA"),
}


def _load_pickle(path: pathlib.Path):
    if not path.is_file():
        raise MissingFileError(path, produced_by=_PRODUCED_BY, why="VOCASET file")
    try:
        with open(path, "rb") as f:
            # The real files are Python 2 pickles of numpy arrays: latin1 decodes their bytes.
            return pickle.load(f, encoding="latin1")
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise CorruptFileError(path, f"{type(err).__name__}: {err}", _PRODUCED_BY) from err


def frame_sample_ranges(num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[num_frames, 2]`` int ``[start, stop)`` audio sample range of each video frame.

    Frame ``k`` covers ``[k / fps, (k + 1) / fps)`` seconds; the ranges tile the audio without
    gaps (rounded boundaries), so windows for audio features can be cut consistently.
    """
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    return np.stack([edges[:-1], edges[1:]], -1)


@dataclasses.dataclass
class VocaSet:
    """A loaded VOCASET-format folder (see :func:`load_voca`).

    Attributes:
      root: the folder.
      verts: ``[num_rows, V, 3]`` float32 read-only memmap of ``data_verts.npy``.
      templates: ``{subject: [V, 3]}``.
      raw_audio: ``{subject: {sentence: {"audio", "sample_rate"}}}``.
      index: ``{subject: {sentence: {frame: row}}}``.
      faces: ``[F, 3]`` triangles, or None when unknown (real data without ``template_mesh``).
      factors: contents of ``factors.npz`` (synthetic data), else None.
      template_mesh: the FLAME template mesh when given (carries UVs and texture).
    """

    root: pathlib.Path
    verts: np.ndarray
    templates: dict
    raw_audio: dict
    index: dict
    faces: np.ndarray | None = None
    factors: dict | None = None
    template_mesh: mesh_io.Mesh | None = None

    @property
    def subjects(self) -> list[str]:
        return sorted(self.index)

    def sentences(self, subject: str) -> list[str]:
        return sorted(self._subject(subject))

    @property
    def sequences(self) -> list[tuple[str, str]]:
        """Every ``(subject, sentence)`` that has frames, sorted."""
        return [(s, q) for s in self.subjects for q in self.sentences(s) if self.index[s][q]]

    def _subject(self, subject: str) -> dict:
        if subject not in self.index:
            raise KeyError(f"{self.root}: no subject {subject!r}; have {self.subjects}")
        return self.index[subject]

    def frames(self, subject: str, sentence: str) -> tuple[np.ndarray, np.ndarray]:
        """Sorted frame numbers ``[n]`` and their ``data_verts`` rows ``[n]`` of a sentence."""
        seq = self._subject(subject)
        if sentence not in seq:
            raise KeyError(f"{self.root}: {subject} has no {sentence!r}; have {sorted(seq)}")
        items = sorted((int(f), int(r)) for f, r in seq[sentence].items())
        arr = np.asarray(items, np.int64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def vertices(self, subject: str, sentence: str, frame: int | None = None) -> np.ndarray:
        """``[V, 3]`` mesh of one frame, or ``[n, V, 3]`` of the whole sentence."""
        frames, rows = self.frames(subject, sentence)
        if frame is None:
            return np.asarray(self.verts[rows])
        hit = np.nonzero(frames == frame)[0]
        if len(hit) == 0:
            raise KeyError(f"{self.root}: {subject}/{sentence} has no frame {frame}")
        return np.asarray(self.verts[rows[hit[0]]])

    def rows_at_fps(self, subject: str, sentence: str, fps: float) -> np.ndarray:
        """``[m]`` rows of the captured frames nearest to each frame of a ``fps`` video.

        ``m = floor(duration * fps)`` with ``duration`` the span of captured frames plus one
        frame; target frame ``k`` at ``k / fps`` seconds takes the nearest capture in time.
        """
        frames, rows = self.frames(subject, sentence)
        cap_times = (frames - frames[0]) / VOCA_FPS
        duration = cap_times[-1] + 1.0 / VOCA_FPS
        targets = np.arange(int(np.floor(duration * fps + 1e-9))) / fps
        pos = np.clip(np.searchsorted(cap_times, targets), 1, len(cap_times) - 1)
        if len(cap_times) == 1:
            return np.repeat(rows, len(targets))
        left = cap_times[pos - 1]
        right = cap_times[pos]
        nearest = np.where(targets - left <= right - targets, pos - 1, pos)
        return rows[nearest]

    def audio(self, subject: str, sentence: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """``[n]`` float32 mono waveform in ``[-1, 1]`` at ``sample_rate`` (default 16 kHz)."""
        try:
            entry = self.raw_audio[subject][sentence]
        except KeyError as err:
            raise KeyError(f"{self.root}/raw_audio_fixed.pkl has no audio for {err}") from err
        audio = np.asarray(entry["audio"])
        if np.issubdtype(audio.dtype, np.integer):
            audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max + 1)
        audio = audio.astype(np.float32)
        if audio.ndim == 2:
            audio = audio.mean(-1)
        return resample(audio, int(entry["sample_rate"]), sample_rate)

    def factor_rows(self, rows: np.ndarray) -> dict:
        """Per-row ground-truth factors (synthetic data only) at ``data_verts`` rows."""
        if self.factors is None:
            raise DatasetError(
                self.root / "factors.npz",
                "is absent: ground-truth factors exist only for the synthetic dataset.",
                "generate one with `python -m jaxhead.data.synthetic --out DIR`.",
            )
        n = len(self.verts)
        return {k: v[rows] for k, v in self.factors.items() if v.ndim >= 1 and v.shape[0] == n}

    def render(
        self,
        row: int,
        c2w: np.ndarray,
        intrinsics,
        height: int,
        width: int,
        *,
        sh: np.ndarray | None = None,
        background=(1.0, 1.0, 1.0),
        supersample: int = 1,
    ) -> tuple[raster.Render, np.ndarray]:
        """Render ``data_verts[row]`` as seen by a world camera; also return the head camera.

        The synthetic set's head pose, subject albedo and sentence lighting come from
        ``factors.npz``; the real set is rendered unposed, with the template's texture when a
        textured template mesh was given (else grey), under ``sh`` or a default frontal light.

        Args:
          row: ``data_verts`` row.
          c2w: ``[4, 4]`` world camera (e.g. :func:`raster.orbit_cameras`).
          intrinsics: ``(fx, fy, cx, cy)`` for ``height x width``.
          height, width: resolution.
          sh: ``[9, 3]`` lighting overriding the factors'.
          background: RGB behind the head.
          supersample: anti-aliasing factor.

        Returns:
          the :class:`raster.Render` and the ``[4, 4]`` camera-to-head matrix of this frame
          (head pose as camera motion), which is what the NeRF stage trains with.
        """
        if self.faces is None:
            raise DatasetError(
                self.root,
                "has no mesh faces: real VOCASET ships vertices only.",
                "pass template_mesh='.../FLAME_sample.ply' (FLAME topology) to load_voca.",
            )
        verts = np.asarray(self.verts[row], np.float64)
        kwargs: dict = {}
        landmarks = None
        c2w_head = np.asarray(c2w, np.float64)
        if self.factors is not None:
            f = self.factors
            subject = int(f["subject"][row])
            verts = head_model.pose_vertices(
                verts, f["head_rotation"][row], f["head_translation"][row]
            )
            c2w_head = head_model.camera_in_head_frame(
                c2w, f["head_rotation"][row], f["head_translation"][row]
            )
            kwargs["vertex_colors"] = f["vertex_albedo"][subject]
            sh = f["illumination"][row] if sh is None else sh
            landmarks = f["landmark_indices"]
        elif self.template_mesh is not None and self.template_mesh.texture is not None:
            m = self.template_mesh
            kwargs.update(uv=m.uv, uv_faces=m.uv_faces, texture=m.texture)
        else:
            kwargs["vertex_colors"] = np.full((len(verts), 3), 0.7, np.float32)
        if sh is None:
            sh = raster.sh_from_lights((0.45,) * 3, (0.3, 0.4, 1.0), (0.65,) * 3)
        out = raster.render_mesh(
            verts,
            self.faces,
            intrinsics,
            c2w,
            height,
            width,
            sh=sh,
            landmark_indices=landmarks,
            background=background,
            supersample=supersample,
            **kwargs,
        )
        return out, c2w_head


def _check_finite(path: pathlib.Path, array: np.ndarray, what: str = "", chunk: int = 2048):
    """Raises `NonFiniteError` naming the first row holding NaN / inf (read in row chunks, so a
    memmap of the real VOCASET's ~7 GB streams through once instead of loading whole)."""
    for start in range(0, len(array), chunk):
        block = np.asarray(array[start : start + chunk])
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            bad = sum(
                int(np.count_nonzero(~np.isfinite(np.asarray(array[i : i + chunk]))))
                for i in range(start, len(array), chunk)
            )
            where = f" of {what}" if what else ""
            raise NonFiniteError(
                path,
                bad,
                start + int(np.argmin(finite)),
                f"the file is damaged{where}: re-download it, or re-create it with {_PRODUCED_BY}.",
            )


def load_voca(root: str | os.PathLike, template_mesh: str | os.PathLike | None = None) -> VocaSet:
    """Open a VOCASET-format folder (memmaps ``data_verts.npy``; loads the three pickles).

    Args:
      root: folder holding the four files (and ``factors.npz`` when synthetic).
      template_mesh: optional FLAME template ``.ply`` / ``.obj`` giving faces (and UV texture)
        for the real VOCASET, whose files carry no faces.

    Raises:
      MissingFileError, CorruptFileError, FeatureShapeError, DatasetError on bad input.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise MissingFileError(root, produced_by=_PRODUCED_BY, why="VOCASET folder")
    verts_path = root / "data_verts.npy"
    if not verts_path.is_file():
        raise MissingFileError(verts_path, produced_by=_PRODUCED_BY, why="VOCASET meshes")
    try:
        verts = np.load(verts_path, mmap_mode="r")
    except ValueError as err:  # truncated file or bad header
        raise CorruptFileError(verts_path, str(err), _PRODUCED_BY) from err
    if verts.ndim != 3 or verts.shape[2] != 3:
        raise FeatureShapeError(verts_path, verts.shape, "[num_frames, V, 3]", _PRODUCED_BY)
    _check_finite(verts_path, verts)
    templates = _load_pickle(root / "templates.pkl")
    raw_audio = _load_pickle(root / "raw_audio_fixed.pkl")
    index = _load_pickle(root / "subj_seq_to_idx.pkl")
    for subject, template in templates.items():
        if np.shape(template) != verts.shape[1:]:
            raise FeatureShapeError(
                root / "templates.pkl", np.shape(template), f"{list(verts.shape[1:])} ({subject})"
            )
        _check_finite(root / "templates.pkl", np.asarray(template, np.float64)[None])
    for subject, sentences in raw_audio.items():
        for sentence, entry in sentences.items():
            audio = entry.get("audio") if isinstance(entry, dict) else None
            if audio is not None and np.issubdtype(np.asarray(audio).dtype, np.floating):
                _check_finite(
                    root / "raw_audio_fixed.pkl",
                    np.asarray(audio).reshape(1, -1),
                    f"{subject}/{sentence}",
                )
    max_row = max(
        (r for seqs in index.values() for fr in seqs.values() for r in fr.values()), default=-1
    )
    if max_row >= len(verts):
        raise DatasetError(
            root / "subj_seq_to_idx.pkl",
            f"points at row {max_row} but data_verts.npy has {len(verts)} rows.",
            "the two files come from different downloads or generator runs; re-create both.",
        )
    factors = None
    faces = None
    factors_path = root / "factors.npz"
    if factors_path.is_file():
        with np.load(factors_path) as z:
            factors = {k: z[k] for k in z.files}
        faces = factors.get("faces")
    mesh = None
    if template_mesh is not None:
        mesh = mesh_io.read_mesh(template_mesh)
        if len(mesh.vertices) != verts.shape[1]:
            raise FeatureShapeError(
                template_mesh, mesh.vertices.shape, f"[{verts.shape[1]}, 3] like data_verts.npy"
            )
        faces = mesh.faces
    return VocaSet(root, verts, templates, raw_audio, index, faces, factors, mesh)


def split_by_subject(subjects: list[str], val: int = 1, test: int = 1) -> dict[str, list[str]]:
    """Subject split: VOCA's own when all its subjects are present, else the last ``val`` and
    ``test`` subjects (sorted) held out."""
    subjects = sorted(subjects)
    if all(s in subjects for split in VOCA_SPLITS.values() for s in split):
        return {k: list(v) for k, v in VOCA_SPLITS.items()}
    if val + test >= len(subjects):
        raise ValueError(
            f"split_by_subject: {len(subjects)} subjects cannot hold out {val} val + {test} test"
        )
    n_train = len(subjects) - val - test
    return {
        "train": subjects[:n_train],
        "val": subjects[n_train : n_train + val],
        "test": subjects[n_train + val :],
    }


def split_by_sentence(
    sequences: list[tuple[str, str]], held_out: int = 1
) -> dict[str, list[tuple[str, str]]]:
    """Per-subject sentence split: each subject's last ``held_out`` sentences go to ``"val"``."""
    by_subject: dict[str, list[str]] = {}
    for subject, sentence in sorted(sequences):
        by_subject.setdefault(subject, []).append(sentence)
    out: dict[str, list[tuple[str, str]]] = {"train": [], "val": []}
    for subject, sents in by_subject.items():
        if held_out >= len(sents):
            raise ValueError(
                f"split_by_sentence: {subject} has {len(sents)} sentences, held_out={held_out}"
            )
        out["train"] += [(subject, q) for q in sents[: len(sents) - held_out]]
        out["val"] += [(subject, q) for q in sents[len(sents) - held_out :]]
    return out
