"""``scripts/preprocess.py VIDEO --out DIR``: one talking-head video -> a dataset folder.

Steps, in order (each one's outputs are listed in docs/preprocess.md):

``decode``         frames at 25 fps -> ``ori_imgs/<i>.jpg``, 16 kHz mono audio -> ``aud.wav``
``mediapipe``      Face Mesh (478 points) + selfie segmentation -> ``landmarks478.npy``,
                   ``valid.npy``, ``valid_frames.json``, ``selfie/<i>.png``
``landmarks``      ``ori_imgs/<i>.lms`` (68 iBUG points), blink -> ``au.csv``, ``blink.npy``
``pose``           the person's 3D shape, focal, smoothed head poses -> ``pose.npz``
``masks``          ``parsing/<i>.png``, ``bc.jpg``, ``gt_imgs/<i>.jpg``
``audio_features`` ``aud_mfcc.npy``, ``aud_logmel.npy`` (+ ``aud_hu.npy`` with a HuBERT checkpoint)
``finalize``       ``transforms_train.json``, ``transforms_val.json``, ``debug/``, checks that
                   `jaxhead.data.video.VideoDataset` reads the folder

``preprocess.json`` records the versions, the options and each step's status, time and numbers.
A re-run skips the steps already done with the same options (a changed option re-runs its step
and every later one); ``transforms_*.json`` and ``"complete": true`` are written last, so a folder
without them is an unfinished run, never a dataset. The decode step works in a hidden folder
beside ``DIR`` and renames it into place only when the whole video and its audio decoded, so a
bad input (not a video, truncated, no audio) leaves nothing behind; a video where no frame has a
face removes the folder it started. Frames without a face keep their ids: they are marked in
``valid.npy`` / ``valid_frames.json`` and left out of the transforms (not renumbered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm

from jaxhead import files
from jaxhead.files import publish
from jaxhead.preprocess import decode, landmarks, masks, mediapipe_worker, pose
from jaxhead.preprocess.errors import PreprocessError

STEPS = ("decode", "mediapipe", "landmarks", "pose", "masks", "audio_features", "finalize")
# 2: parsing/ in the peers' colours (format 1 had head and torso swapped in the files).
FORMAT = 2
MEDIAPIPE_ENV = "JAXHEAD_MEDIAPIPE_PYTHON"
MEDIAPIPE_SETUP = (
    "MediaPipe cannot share the main environment (mediapipe 0.10.14 needs protobuf < 5, grain "
    "needs protobuf >= 5.28). Create a separate environment once, from the repository root:\n"
    "    python -m venv .venv-mediapipe\n"
    '    .venv-mediapipe/bin/pip install "mediapipe==0.10.14" "numpy>=2,<3"\n'
    "then pass --mediapipe_python .venv-mediapipe/bin/python (or set "
    f"{MEDIAPIPE_ENV}=.venv-mediapipe/bin/python)."
)


@dataclasses.dataclass
class Options:
    """What `preprocess` does; see scripts/preprocess.py for the flags."""

    fps: int = 25
    max_seconds: float | None = None
    val_seconds: float | None = None
    mediapipe_python: str | None = None
    hubert_checkpoint: str | None = None
    focal: float | None = None
    smooth_sigma: float = 1.5
    blink_closed_ratio: float = 0.3
    jpeg_quality: int = 95
    debug_frames: int = 4
    progress: bool = True
    redo: str | None = None  # re-run this step and the later ones even when done


# The options each step depends on (a change re-runs the step and the ones after it).
STEP_OPTIONS = {
    "decode": ("fps", "max_seconds"),
    "mediapipe": (),
    "landmarks": ("blink_closed_ratio",),
    "pose": ("focal", "smooth_sigma"),
    "masks": (),
    "audio_features": ("hubert_checkpoint",),
    "finalize": ("val_seconds",),
}


def _versions() -> dict[str, str]:
    import av

    import jaxhead

    return {
        "jaxhead": getattr(jaxhead, "__version__", "0"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "av": av.__version__,
    }


def _write_json(path: pathlib.Path, data) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(data, file, indent=1)
            file.write("\n")
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _video_identity(video: pathlib.Path) -> dict:
    """:func:`jaxhead.files.identity` plus ``mtime`` (what older folders recorded)."""
    return {**files.identity(video), "mtime": int(video.stat().st_mtime)}


class Run:
    """One preprocessing run of ``video`` into ``out`` (state = ``out/preprocess.json``)."""

    def __init__(self, video: str | os.PathLike, out: str | os.PathLike, options: Options):
        self.video = pathlib.Path(video)
        self.out = pathlib.Path(out)
        for name in ("hubert_checkpoint", "mediapipe_python"):  # paths are stored as strings
            value = getattr(options, name)
            if value is not None:
                setattr(options, name, os.fspath(value))
        self.options = options
        self.state: dict = {}

    # -- state -------------------------------------------------------------------------------

    @property
    def state_path(self) -> pathlib.Path:
        return self.out / "preprocess.json"

    def step_options(self, step: str) -> dict:
        return {name: getattr(self.options, name) for name in STEP_OPTIONS[step]}

    def save(self) -> None:
        _write_json(self.state_path, self.state)

    def _bar(self, total: int | None, desc: str):
        return tqdm(total=total, desc=desc, unit="frame", disable=not self.options.progress)

    def log(self, message: str) -> None:
        if self.options.progress:
            tqdm.write(message, file=sys.stderr)

    # -- driver ------------------------------------------------------------------------------

    def run(self) -> dict:
        if self.options.redo is not None and self.options.redo not in STEPS[1:]:
            raise ValueError(f"--redo must be one of {STEPS[1:]}, got {self.options.redo!r}")
        if not self.video.is_file():
            raise PreprocessError(self.video, "file not found.", "check the path of the video.")
        identity = _video_identity(self.video)
        if self.out.exists():
            if not self.state_path.is_file():
                if any(self.out.iterdir()):
                    raise PreprocessError(
                        self.out,
                        "exists, is not empty and holds no preprocess.json; it is not a "
                        "preprocessing folder, so nothing is written into it.",
                        "give --out a new folder.",
                    )
                self.out.rmdir()
            else:
                try:
                    self.state = json.loads(self.state_path.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                    raise PreprocessError(
                        self.state_path,
                        f"cannot be read ({error}); the run that wrote it was cut.",
                        "delete the folder and run again.",
                    ) from error
                recorded = self.state.get("video", {})
                decode_opts = self.state.get("steps", {}).get("decode", {}).get("options")
                same_video = files.same_file(recorded, identity)
                if not same_video or decode_opts != self.step_options("decode"):
                    raise PreprocessError(
                        self.out,
                        f"was made from {recorded.get('path')} with {decode_opts}, not from "
                        f"{self.video} with {self.step_options('decode')}; it is not "
                        "overwritten.",
                        "give --out a new folder, or delete this one to start again.",
                    )
        self._check_options()
        redo = False
        for step in STEPS:
            record = self.state.get("steps", {}).get(step, {})
            done = record.get("status") == "done" and record.get("options") == (
                self.step_options(step)
            )
            if step == self.options.redo and step != "decode":
                done = False
            if done and not redo:
                self.log(f"[{step}] done before ({record.get('seconds', 0):.1f} s), skipped")
                continue
            redo = True
            if step != "decode":
                self._invalidate()
            start = time.perf_counter()
            try:
                stats = getattr(self, f"step_{step}")() or {}
            except BaseException as error:
                if self.state_path.is_file() and step != "decode":
                    self.state["steps"][step] = {
                        "status": "failed",
                        "options": self.step_options(step),
                        "error": f"{type(error).__name__}: {error}",
                    }
                    self.save()
                raise
            seconds = time.perf_counter() - start
            self.state["steps"][step] = {
                "status": "done",
                "options": self.step_options(step),
                "seconds": round(seconds, 2),
                "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                **stats,
            }
            if step == "finalize":
                self.state["complete"] = True
            self.state["options"] = dataclasses.asdict(self.options)  # the latest run's
            self.save()
            self.log(f"[{step}] done in {seconds:.1f} s")
        return self.state

    def _invalidate(self) -> None:
        """Before any step re-runs: the folder stops being a finished dataset."""
        for name in ("transforms_train.json", "transforms_val.json"):
            (self.out / name).unlink(missing_ok=True)
        if self.state.get("complete"):
            self.state["complete"] = False
            self.save()

    # -- steps -------------------------------------------------------------------------------

    def step_decode(self) -> dict:
        opts = self.options
        info = decode.probe(self.video)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(
            tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent)
        )
        try:
            (staging / "ori_imgs").mkdir()
            max_frames = None
            if opts.max_seconds is not None:
                max_frames = max(1, int(round(opts.max_seconds * opts.fps)))
            expected = int(round(info.duration * opts.fps)) or None
            if max_frames is not None and expected is not None:
                expected = min(expected, max_frames)
            quality = [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality]
            with self._bar(expected, "decode") as bar:

                def write(i: int, rgb: np.ndarray) -> None:
                    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                    cv2.imwrite(os.fspath(staging / "ori_imgs" / f"{i}.jpg"), bgr, quality)
                    bar.update()

                num, start = decode.decode_frames(self.video, opts.fps, max_frames, write)
            from jaxhead.audio.io import SAMPLE_RATE, save_wav

            audio = decode.extract_audio(self.video, num, opts.fps, start)
            # The input is good; without MediaPipe the next step cannot run: stop before the
            # folder appears.
            mediapipe_python(opts.mediapipe_python)
            save_wav(staging / "aud.wav", audio, SAMPLE_RATE)
            stats = {
                "num_frames": num,
                "source_fps": info.source_fps,
                "width": info.width,
                "height": info.height,
                "seconds_of_video": num / opts.fps,
                "audio_rate": info.audio_rate,
            }
            self.state = {
                "format": FORMAT,
                "video": _video_identity(self.video),
                "versions": _versions(),
                "options": dataclasses.asdict(opts),
                "complete": False,
                "info": stats,
                # Recorded in the folder as it appears (the driver adds the time right after).
                "steps": {"decode": {"status": "done", "options": self.step_options("decode")}},
            }
            _write_json(staging / "preprocess.json", self.state)
            if self.out.exists():
                raise PreprocessError(self.out, "appeared while decoding.", "run again.")
            publish(staging, self.out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return stats

    @property
    def num_frames(self) -> int:
        return int(self.state["info"]["num_frames"])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the frames."""
        image = cv2.imread(os.fspath(self.out / "ori_imgs" / "0.jpg"))
        return image.shape[:2]

    def step_mediapipe(self) -> dict:
        result_path = self.out / "mediapipe.npz"
        frames, selfie = self.out / "ori_imgs", self.out / "selfie"
        with self._bar(self.num_frames, "face mesh + segmentation") as bar:
            run_mediapipe(frames, result_path, selfie, self.options.mediapipe_python, bar)
        with np.load(result_path) as result:
            marks, found = result["landmarks"], result["found"]
        if len(found) != self.num_frames:
            raise PreprocessError(result_path, f"has {len(found)} frames, not {self.num_frames}.")
        if not found.any():
            shutil.rmtree(self.out, ignore_errors=True)
            raise PreprocessError(
                self.video,
                f"MediaPipe Face Mesh found no face in any of its {len(found)} frames; the "
                f"dataset folder {self.out} was removed.",
                "give a video where one face is visible (frontal, not too small, lit).",
            )
        np.save(self.out / "landmarks478.npy", marks.astype(np.float32))
        np.save(self.out / "valid.npy", found)
        missing = np.flatnonzero(~found).tolist()
        _write_json(
            self.out / "valid_frames.json",
            {
                "num_frames": len(found),
                "num_valid": int(found.sum()),
                "valid": found.astype(int).tolist(),
                "missing_img_ids": missing,
            },
        )
        result_path.unlink()
        return {"faces_found": int(found.sum()), "frames": len(found), "missing": len(missing)}

    def _landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        return np.load(self.out / "landmarks478.npy"), np.load(self.out / "valid.npy")

    def step_landmarks(self) -> dict:
        marks, valid = self._landmarks()
        for stale in (self.out / "ori_imgs").glob("*.lms"):
            stale.unlink()
        ibug = landmarks.to_ibug68(marks[..., :2])
        for i in np.flatnonzero(valid):
            np.savetxt(self.out / "ori_imgs" / f"{i}.lms", ibug[i], "%.4f")
        ear = landmarks.eye_aspect_ratio(marks)
        blink, refs = landmarks.blink_from_ear(ear, valid, self.options.blink_closed_ratio)
        np.save(self.out / "blink.npy", blink)
        write_au_csv(self.out / "au.csv", blink, valid, self.options.fps)
        return {
            "blinks": landmarks.count_blinks(blink[valid]),
            "blink_frames_over_half": int((blink > 0.5).sum()),
            **{k: round(v, 4) for k, v in refs.items()},
        }

    def step_pose(self) -> dict:
        marks, valid = self._landmarks()
        height, width = self.size
        _, rigid = pose.canonical_shape(marks[valid])  # the rigid set, from the raw points
        curve = {}
        if self.options.focal:
            focal = float(self.options.focal)
        else:
            focal, curve = pose.estimate_focal(marks[valid], rigid, width, height)
        points3d = pose.unproject(marks[valid], focal, width, height)
        shape, _ = pose.canonical_shape(points3d, rigid=rigid)
        points2d = marks[:, rigid, :2].astype(np.float64)
        rots, trans, rmse = pose.solve_poses(shape[rigid], points2d, focal, width, height)
        ok = valid & np.isfinite(rmse)
        if not ok.any():
            raise PreprocessError(self.video, "no frame's head pose could be solved.")
        rots_s, trans_s = pose.smooth_poses(rots, trans, ok, self.options.smooth_sigma)
        c2w = pose.camera_to_world(rots_s, trans_s)
        np.savez(
            self.out / "pose.npz",
            c2w=c2w.astype(np.float32),
            valid=ok,
            focal=np.float64(focal),
            shape=shape.astype(np.float32),
            rigid=rigid,
            rotation_raw=np.where(ok[:, None, None], rots, np.nan),
            translation_raw=np.where(ok[:, None], trans, np.nan),
            rotation=rots_s,
            translation=trans_s,
            reprojection_rmse=rmse,
            focal_curve=np.array(list(curve.items()), np.float64).reshape(-1, 2),
        )
        idx = np.flatnonzero(ok)
        # The cameras as a NeRF reads them, against the detected points (the whole chain).
        projected = pose.project_opengl(shape[rigid], c2w[idx], focal, width, height)
        camera_error = np.linalg.norm(projected - marks[idx][:, rigid, :2], axis=-1)
        steps_raw = pose.angular_steps(rots[idx])
        steps_s = pose.angular_steps(rots_s[idx])
        contiguous = np.diff(idx) == 1
        angles = pose.rotation_angles(rots_s[idx] @ np.diag([1.0, -1.0, -1.0]))

        def jitter(steps):
            return float(np.sqrt(np.mean(np.diff(steps[contiguous]) ** 2))) if len(idx) > 2 else 0.0

        return {
            "focal": round(focal, 1),
            "fov_x_deg": round(float(np.degrees(2 * np.arctan(width / (2 * focal)))), 2),
            "median_reprojection_px": round(float(np.nanmedian(rmse)), 3),
            "median_camera_reprojection_px": round(float(np.median(camera_error)), 3),
            "camera_distance_m": round(float(np.median(np.linalg.norm(trans_s[idx], axis=1))), 3),
            "rotation_step_deg_raw": round(float(np.mean(steps_raw[contiguous])), 4),
            "rotation_step_deg_smoothed": round(float(np.mean(steps_s[contiguous])), 4),
            "rotation_jitter_deg_raw": round(jitter(steps_raw), 4),
            "rotation_jitter_deg_smoothed": round(jitter(steps_s), 4),
            "pitch_yaw_roll_range_deg": [
                [round(float(a), 1), round(float(b), 1)]
                for a, b in zip(angles.min(0), angles.max(0), strict=True)
            ],
            "rigid_points": len(rigid),
        }

    def step_masks(self) -> dict:
        marks, valid = self._landmarks()
        num = self.num_frames
        for folder in ("parsing", "gt_imgs"):
            (self.out / folder).mkdir(exist_ok=True)
        sample = set(np.linspace(0, num - 1, min(60, num)).round().astype(int).tolist())
        frames, fgs = [], []
        share = np.zeros(4)
        with self._bar(num, "masks") as bar:
            for i in range(num):
                prob = cv2.imread(os.fspath(self.out / "selfie" / f"{i}.png"), 0) / 255.0
                labels = masks.parse_frame(prob, marks[i] if valid[i] else None)
                share += np.bincount(labels.ravel(), minlength=4)[:4] / labels.size
                masks.write_parsing(self.out / "parsing" / f"{i}.png", labels)
                if i in sample:
                    frames.append(cv2.imread(os.fspath(self.out / "ori_imgs" / f"{i}.jpg")))
                    fgs.append(labels != masks.BACKGROUND)
                bar.update()
        background, inpainted = masks.background_image(frames, fgs)
        cv2.imwrite(os.fspath(self.out / "bc.jpg"), background, [cv2.IMWRITE_JPEG_QUALITY, 95])
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality]
        with self._bar(num, "gt_imgs") as bar:
            for i in range(num):
                image = cv2.imread(os.fspath(self.out / "ori_imgs" / f"{i}.jpg"))
                parsing = cv2.imread(os.fspath(self.out / "parsing" / f"{i}.png"))
                is_bg = (parsing == 255).all(-1)
                image[is_bg] = background[is_bg]
                cv2.imwrite(os.fspath(self.out / "gt_imgs" / f"{i}.jpg"), image, quality)
                bar.update()
        share /= num
        return {
            "mean_share": {
                name: round(float(share[label]), 4)
                for name, label in (("background", 0), ("head", 1), ("neck", 2), ("torso", 3))
            },
            "background_inpainted_share": round(inpainted, 4),
            # The colour convention of the parsing files (jaxhead.data.video.parsing_colors).
            "parsing_colors": masks.PARSING_CONVENTION,
        }

    def step_audio_features(self) -> dict:
        from jaxhead.audio import features
        from jaxhead.audio.io import load_audio

        audio, _ = load_audio(self.out / "aud.wav")
        written = {}
        for kind, name in (("mfcc", "aud_mfcc.npy"), ("logmel", "aud_logmel.npy")):
            array = features.extract(audio, kind, fps=self.options.fps, num_frames=self.num_frames)
            features.save_features(self.out / name, array)
            written[name] = list(array.shape)
        (self.out / "aud_hu.npy").unlink(missing_ok=True)
        if self.options.hubert_checkpoint:
            array = features.extract(
                audio,
                "hubert",
                self.options.hubert_checkpoint,
                fps=self.options.fps,
                num_frames=self.num_frames,
            )
            features.save_features(self.out / "aud_hu.npy", array)
            written["aud_hu.npy"] = list(array.shape)
        return {"files": written}

    def _split(self, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation frame ids (frames with a face and a pose), or the error."""
        ids = np.flatnonzero(ok)
        if len(ids) < 2:
            raise PreprocessError(
                self.video,
                f"only {len(ids)} frame has a face and a head pose; a dataset needs at least 2.",
                "give a longer video with the face visible.",
            )
        if self.options.val_seconds is not None:
            cut = self.num_frames - int(round(self.options.val_seconds * self.options.fps))
        else:  # AD-NeRF: the first 10/11 of the frames train, the rest validate
            cut = int(self.num_frames * 10 / 11)
        train, val = ids[ids < cut], ids[ids >= cut]
        if not len(train) or not len(val):
            raise PreprocessError(
                self.video,
                f"the split at frame {cut} leaves {len(train)} training and {len(val)} "
                f"validation frames with a face.",
                "choose a --val_seconds shorter than the video (or leave it out).",
            )
        return train, val

    def _check_options(self) -> None:
        """Rejects bad options before any step touches the folder (a finished dataset stays)."""
        opts = self.options
        positive = {"fps": opts.fps, "max_seconds": opts.max_seconds}
        positive |= {"val_seconds": opts.val_seconds, "focal": opts.focal}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise PreprocessError(None, f"--{name} must be > 0, got {value}.")
        if not opts.smooth_sigma >= 0:
            raise PreprocessError(None, f"--smooth_sigma must be >= 0, got {opts.smooth_sigma}.")
        if opts.val_seconds is None:
            return
        if "info" in self.state:
            frames = self.num_frames
        else:
            seconds = decode.probe(self.video).duration
            if opts.max_seconds is not None:
                seconds = min(seconds, opts.max_seconds)
            frames = int(round(seconds * opts.fps))
        if int(round(opts.val_seconds * opts.fps)) >= frames:
            raise PreprocessError(
                self.video,
                f"--val_seconds {opts.val_seconds:g} is not shorter than the video "
                f"({frames / opts.fps:.2f} s); nothing would be left to train on.",
                "choose a --val_seconds shorter than the video (or leave it out).",
            )
        pose_done = self.state.get("steps", {}).get("pose", {}).get("status") == "done"
        if pose_done and (self.out / "pose.npz").is_file():
            with np.load(self.out / "pose.npz") as data:
                self._split(data["valid"])

    def step_finalize(self) -> dict:
        height, width = self.size
        data = np.load(self.out / "pose.npz")
        c2w, ok, focal = data["c2w"], data["valid"], float(data["focal"])
        marks, _ = self._landmarks()
        train, val = self._split(ok)
        self._write_debug(c2w, ok, data["shape"][data["rigid"]], focal)
        for name, split in (("transforms_val.json", val), ("transforms_train.json", train)):
            frames = []
            for i in split.tolist():
                xy = marks[i, :, :2]
                lo, hi = np.floor(xy.min(0)), np.ceil(xy.max(0))
                frames.append(
                    {
                        "img_id": i,
                        "aud_id": i,
                        "transform_matrix": c2w[i].astype(float).round(7).tolist(),
                        "face_rect": [int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])],
                    }
                )
            meta = {
                "focal_len": focal,
                "cx": width / 2,
                "cy": height / 2,
                "h": height,
                "w": width,
                "fps": self.options.fps,
                "frames": frames,
            }
            _write_json(self.out / name, meta)
        check = check_dataset(self.out)
        return {"train_frames": len(train), "val_frames": len(val), "check": check}

    def _write_debug(self, c2w: np.ndarray, ok: np.ndarray, rigid_shape, focal: float) -> None:
        """Frames with parsing colours, the 68 points (yellow) and the person's rigid 3D points
        seen through the written camera (magenta); the pose / blink traces."""
        debug = self.out / "debug"
        debug.mkdir(exist_ok=True)
        marks, valid = self._landmarks()
        ids = np.flatnonzero(valid)
        picks = ids[
            np.linspace(0, len(ids) - 1, min(self.options.debug_frames, len(ids))).astype(int)
        ]
        for i in picks.tolist():
            image = cv2.imread(os.fspath(self.out / "ori_imgs" / f"{i}.jpg"))[..., ::-1]
            parsing = cv2.imread(os.fspath(self.out / "parsing" / f"{i}.png"))[..., ::-1]
            labels = np.full(parsing.shape[:2], masks.BACKGROUND, np.uint8)
            for label, color in masks.LABEL_COLORS.items():
                labels[(parsing == np.array(color)).all(-1)] = label
            picture = masks.overlay(image, labels, landmarks.to_ibug68(marks[i]))
            if ok[i]:
                height, width = labels.shape
                seen = pose.project_opengl(rigid_shape, c2w[i : i + 1], focal, width, height)[0]
                for x, y in seen:
                    cv2.circle(picture, (int(round(x)), int(round(y))), 1, (255, 0, 255), -1)
            cv2.imwrite(os.fspath(debug / f"frame_{i}.png"), picture[..., ::-1].copy())
        plot_traces(debug / "pose_blink.png", c2w, ok, np.load(self.out / "blink.npy"), valid)


def write_au_csv(path: pathlib.Path, blink: np.ndarray, valid: np.ndarray, fps: int) -> None:
    """OpenFace-style ``au.csv``: one row per frame id, ``", "``-separated headers.

    `` AU45_r`` is ``2 * blink`` so that ER-NeRF's and `jaxhead.data.video`'s reading,
    ``clip(AU45_r, 0, 2) / 2``, gives back the blink in [0, 1]; `` blink`` holds it directly.
    """
    lines = ["frame, timestamp, confidence, success, AU45_r, blink"]
    for i, (value, ok) in enumerate(zip(blink.tolist(), valid.tolist(), strict=True)):
        lines.append(
            f"{i + 1}, {i / fps:.3f}, {float(ok):.2f}, {int(ok)}, {2 * value:.4f}, {value:.4f}"
        )
    path.write_text("\n".join(lines) + "\n")


def plot_traces(path: pathlib.Path, c2w: np.ndarray, ok: np.ndarray, blink, valid) -> None:
    """Head rotation (pitch / yaw / roll), camera distance and blink over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rots = np.where(ok[:, None, None], np.transpose(c2w[:, :3, :3], (0, 2, 1)), np.nan)
    angles = pose.rotation_angles(np.nan_to_num(rots))
    angles[~ok] = np.nan
    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for k, name in enumerate(("pitch", "yaw", "roll")):
        axes[0].plot(angles[:, k], label=name)
    axes[0].set_ylabel("head rotation (deg)")
    axes[0].legend(loc="upper right")
    distance = np.where(ok, np.linalg.norm(c2w[:, :3, 3], axis=1), np.nan)
    axes[1].plot(distance)
    axes[1].set_ylabel("camera distance (m)")
    axes[2].plot(np.where(valid, blink, np.nan))
    axes[2].set_ylabel("blink")
    axes[2].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def check_dataset(root: pathlib.Path) -> dict:
    """Loads the folder with `jaxhead.data.video.VideoDataset` (both splits, one frame each)."""
    from jaxhead.data.video import VideoDataset

    out = {}
    for split in ("train", "val"):
        dataset = VideoDataset(root, split, audio="aud_mfcc.npy", lr_factor=1)
        example = dataset[0]
        out[split] = {"frames": len(dataset), "image": list(example["image"].shape)}
    return out


# -- MediaPipe -------------------------------------------------------------------------------


def mediapipe_python(option: str | None) -> str | None:
    """The interpreter to run the MediaPipe worker under, or None to run it in-process.

    ``--mediapipe_python`` first, then ``$JAXHEAD_MEDIAPIPE_PYTHON``, then this interpreter when
    MediaPipe imports here; otherwise a `PreprocessError` with the commands that make the env.
    """
    python = option or os.environ.get(MEDIAPIPE_ENV)
    if python:
        found = shutil.which(python) or (python if os.path.isfile(python) else None)
        if found is None:
            raise PreprocessError(
                python, "the MediaPipe interpreter does not exist.", MEDIAPIPE_SETUP
            )
        return os.path.abspath(found)
    if mediapipe_worker.available():
        return None
    raise PreprocessError(None, "MediaPipe is not available.", MEDIAPIPE_SETUP)


def run_mediapipe(
    frames: pathlib.Path,
    out: pathlib.Path,
    segmentation: pathlib.Path,
    python_option: str | None = None,
    bar=None,
) -> None:
    """Runs `mediapipe_worker` over ``frames`` (in-process or under the MediaPipe interpreter)."""
    python = mediapipe_python(python_option)

    def advance(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    if python is None:
        mediapipe_worker.process(frames, out, segmentation, advance)
        return
    env = dict(os.environ)
    package_root = os.fspath(pathlib.Path(mediapipe_worker.__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [python, "-m", "jaxhead.preprocess.mediapipe_worker"]
    command += ["--frames", os.path.abspath(frames), "--out", os.path.abspath(out)]
    command += ["--segmentation", os.path.abspath(segmentation)]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env, cwd=package_root
        )
        with contextlib.ExitStack() as stack:
            stack.callback(process.kill)
            for line in process.stdout:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "progress":
                    advance(int(parts[1]), int(parts[2]))
            code = process.wait()
        errors.seek(0)
        tail = "\n".join(
            line
            for line in errors.read().splitlines()
            if line.startswith(("error", "Trace")) or "Error" in line
        )[-2000:]
    if code != 0 or not out.is_file():
        raise PreprocessError(
            python,
            f"the MediaPipe worker failed (exit code {code}): {tail or 'no message'}",
            MEDIAPIPE_SETUP if code == 2 else None,
        )


def preprocess(video: str | os.PathLike, out: str | os.PathLike, **options) -> dict:
    """Runs (or resumes) every step; returns the ``preprocess.json`` state."""
    return Run(video, out, Options(**options)).run()
