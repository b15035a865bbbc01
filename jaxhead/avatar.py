"""From one talking-head video to an avatar driven by new speech: the whole pipeline, resumable.

    python scripts/avatar.py VIDEO --workdir W [--val_seconds S] [--audio NEW.wav ...]

Steps, each skipped when done (a re-run of the same command continues where it stopped), with
one line per step and the final scores table printed:

1. ``preprocess``: the video into the AD-NeRF / ER-NeRF dataset layout in ``W/data``
   (:func:`jaxhead.preprocess.pipeline.preprocess`; MediaPipe under ``mediapipe_python``, else
   ``$JAXHEAD_MEDIAPIPE_PYTHON``); the last ``val_seconds`` are held out (``transforms_val.json``).
2. ``nerf``: the NeRF config (``configs/video.py`` and the user's overrides) over ``W/data`` into
   ``W/nerf``: with the default ``config.sync.train`` it first trains the speaker's own sync stage
   on the training part (``W/nerf/sync``, :mod:`jaxhead.nerf.own_sync`), whose audio encoder
   supplies F_lip and later scores lip sync.
3. ``evaluate``: the metric suite on the held-out end (:func:`jaxhead.nerf.evaluate.
   evaluate_workdir`): ``W/nerf/eval.json`` and ``W/nerf/eval.md``.
4. ``demo``: the held-out end rendered beside the truth, with its audio: ``W/heldout.mp4``.
5. ``gpvae`` (with ``gpvae_workdir`` and ``gpvae_finetune_steps > 0``): the GP-VAE of
   ``gpvae_workdir`` (pre-trained on other people's videos, docs/gpvae.md) with its cross-modal
   encoder ``E_ah`` fine-tuned on this video's training part into ``W/gpvae``
   (:func:`jaxhead.gpvae.stage.finetune_config`: the held-out end stays held out, and its
   ``eval.json`` scores the generated motion and blinks there).
6. ``drive`` (with ``audio``): each new recording rendered with the video's own head motion and
   blinks replayed (``pose_from="source"``: ``W/speech_<name>.mp4``), or with pose and blinks
   generated from the recording by the GP-VAE (``pose_from="gpvae"``: ``W/gpvae`` when
   fine-tuned, else ``gpvae_workdir``; the head starts from the person's first frames):
   ``W/speech_<name>_gpvae.mp4`` and the generated pose / blink in ``.npz`` beside it.

``W/avatar.json`` records the inputs (the video's path, size and a digest of its first MiB, the
held-out seconds) and each finished step; a different video or split in the same workdir is
refused, never mixed in. ``W/.lock`` keeps a second pipeline out of the workdir.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from jaxhead import files
from jaxhead.train.errors import UserError, WorkdirConflictError
from jaxhead.train.workdir import check_workdir_path, lock_workdir, write_json_atomic

STATE_FILE = "avatar.json"
STEPS = ("preprocess", "nerf", "evaluate", "demo", "gpvae", "drive")
POSE_FROM = ("source", "gpvae")


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the pipeline writes, under ``root`` (the ``--workdir``)."""

    root: pathlib.Path

    @property
    def data(self) -> pathlib.Path:
        return self.root / "data"

    @property
    def nerf(self) -> pathlib.Path:
        return self.root / "nerf"

    @property
    def heldout(self) -> pathlib.Path:
        return self.root / "heldout.mp4"

    @property
    def gpvae(self) -> pathlib.Path:
        return self.root / "gpvae"

    def speech(self, audio: str | os.PathLike, pose_from: str = "source") -> pathlib.Path:
        suffix = "" if pose_from == "source" else f"_{pose_from}"
        return self.root / f"speech_{pathlib.Path(audio).stem}{suffix}.mp4"


def video_identity(video: str | os.PathLike) -> dict:
    """``{"path", "bytes", "head_sha256"}`` of a video: what tells two inputs apart without
    reading a whole file (its absolute path, size and the digest of its first MiB)."""
    path = pathlib.Path(video).expanduser()
    if not path.is_file():
        raise UserError(f"{video}: no such video file; give the path of a talking-head video")
    return files.identity(path)


def _read_state(layout: Layout) -> dict:
    path = layout.root / STATE_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(
            f"{path} is unreadable ({e}); delete it to let the pipeline check each step again "
            "(finished steps are found from their outputs)"
        ) from e


def _check_inputs(state: dict, inputs: dict, layout: Layout) -> None:
    """Refuses a workdir made from another video or another held-out split."""
    old = state.get("inputs")
    if not old:
        return
    if not files.same_file(old["video"], inputs["video"]):
        raise WorkdirConflictError(
            f"{layout.root} holds the avatar of {old['video']['path']}, not of "
            f"{inputs['video']['path']}; choose a new --workdir for this video"
        )
    if old.get("val_seconds") != inputs.get("val_seconds"):
        raise WorkdirConflictError(
            f"{layout.root} was made with --val_seconds {old.get('val_seconds')}, not "
            f"{inputs.get('val_seconds')}; re-run with the same value or choose a new --workdir"
        )


def nerf_config(config: ml_collections.ConfigDict, layout: Layout) -> ml_collections.ConfigDict:
    """The NeRF config over the pipeline's dataset folder (``W/data``); the held-out part is
    the preprocessing's ``transforms_val.json`` (the video's end)."""
    root = str(config.data.get("root", ""))
    if root and pathlib.Path(root).expanduser().resolve() != layout.data.resolve():
        raise UserError(
            f"--config.data.root={root}: avatar.py preprocesses the video into {layout.data} and "
            "trains on that; drop the flag, or train on an existing dataset folder with "
            "scripts/train_nerf.py --config configs/video.py --config.data.root=DIR"
        )
    if float(config.data.get("val_seconds", 0.0)) > 0:
        raise UserError(
            "--config.data.val_seconds: avatar.py holds out the video's end with --val_seconds "
            "(written by the preprocessing); use that flag instead"
        )
    out = ml_collections.ConfigDict(config.to_dict())
    out.data.root = str(layout.data.resolve())
    out.lock()
    return out


def _finished(run: pathlib.Path, steps: int) -> bool:
    """Whether a stage's run (NeRF or GP-VAE: both write eval.json with its step at the end)
    finished ``steps`` steps."""
    try:
        return int(json.loads((run / "eval.json").read_text()).get("step", -1)) >= steps
    except (OSError, ValueError):
        return False


@dataclasses.dataclass
class Pipeline:
    """One avatar's pipeline over ``layout`` (see the module docstring)."""

    video: str
    layout: Layout
    config: ml_collections.ConfigDict
    val_seconds: float | None = None
    mediapipe_python: str | None = None
    audio: Sequence[str] = ()
    pose_from: str = "source"
    gpvae_workdir: str | None = None
    gpvae_finetune_steps: int = 0
    progress: bool = True
    say: Callable[[str], None] = print

    def __post_init__(self):
        self.inputs = {"video": video_identity(self.video), "val_seconds": self.val_seconds}
        for path in self.audio:
            if not pathlib.Path(path).expanduser().is_file():
                raise UserError(f"--audio {path}: no such file; give a recording (wav/mp3/flac)")
        self._check_gpvae()
        self.nerf = nerf_config(self.config, self.layout)
        if not self.progress:  # a resumable key: an earlier run's setting does not matter
            self.nerf.train.progress = False
        self._trained = None

    def _check_gpvae(self) -> None:
        if self.pose_from not in POSE_FROM:
            raise UserError(f"--pose_from {self.pose_from}: use one of {', '.join(POSE_FROM)}")
        if self.gpvae_finetune_steps < 0:
            raise UserError(f"--gpvae_finetune_steps {self.gpvae_finetune_steps}: use 0 or more")
        needs = self.pose_from == "gpvae" or self.gpvae_finetune_steps > 0
        if needs and not self.gpvae_workdir:
            raise UserError(
                "--pose_from gpvae / --gpvae_finetune_steps need --gpvae_workdir, a GP-VAE "
                "trained on video folders (docs/gpvae.md)"
            )
        if self.gpvae_workdir:
            run = pathlib.Path(self.gpvae_workdir).expanduser()
            if not (run / "config.json").is_file() or not (run / "checkpoints").is_dir():
                raise UserError(
                    f"--gpvae_workdir {self.gpvae_workdir}: not a trained GP-VAE run (no "
                    "config.json and checkpoints/); train one with scripts/train_gpvae.py "
                    "(docs/gpvae.md)"
                )

    @property
    def pose_model(self) -> str:
        """The GP-VAE that generates pose and blinks: the fine-tuned one when there is one."""
        if self.gpvae_finetune_steps > 0:
            return str(self.layout.gpvae)
        return str(self.gpvae_workdir)

    # --- state ------------------------------------------------------------------------------

    def _save(self, state: dict) -> None:
        write_json_atomic(self.layout.root / STATE_FILE, state)

    def _trained_run(self):
        from jaxhead.nerf import render_video

        if self._trained is None:
            self._trained = render_video.load_trained(self.layout.nerf)
        return self._trained

    # --- steps ------------------------------------------------------------------------------

    def preprocess(self) -> str:
        from jaxhead.preprocess.pipeline import preprocess

        state = preprocess(
            self.video, self.layout.data, val_seconds=self.val_seconds,
            mediapipe_python=self.mediapipe_python, progress=self.progress,
        )  # fmt: skip
        frames = state["steps"].get("finalize", {})
        counts = {k: frames[k] for k in ("train_frames", "val_frames") if k in frames}
        return ", ".join(f"{k} {v}" for k, v in counts.items()) or str(self.layout.data)

    def train_nerf(self) -> str:
        from jaxhead.nerf import stage

        steps = int(self.nerf.train.steps)
        if _finished(self.layout.nerf, steps):
            return f"trained ({steps} steps)"
        stage.train(self.nerf, self.layout.nerf)
        return f"{steps} steps in {self.layout.nerf}"

    def evaluate(self) -> str:
        from jaxhead.nerf import evaluate

        results = evaluate.evaluate_workdir(
            self.layout.nerf, mediapipe_python=self.mediapipe_python
        )
        self.table = results["table"]
        return str(self.layout.nerf / "eval.md")

    def demo(self) -> str:
        from jaxhead.nerf import render_video

        path = render_video.write_heldout_video(self._trained_run(), 0, self.layout.heldout)
        return f"{path} (render | truth, with the held-out audio)"

    def finetune_gpvae(self) -> str:
        from jaxhead.gpvae import stage

        steps = self.gpvae_finetune_steps
        if not _finished(self.layout.gpvae, steps):
            config = stage.finetune_config(self.gpvae_workdir, (str(self.layout.data),), steps)
            config.train.progress = config.train.progress and self.progress
            stage.train(config, self.layout.gpvae)
        scores = json.loads((self.layout.gpvae / "eval.json").read_text())
        shown = ("d_rot", "d_rot_hold", "d_pos", "d_pos_hold", "velocity_ratio_samples",
                 "blinks_per_s_generated", "blinks_per_s_ground_truth")  # fmt: skip
        held = ", ".join(f"{k} {scores[k]:.3g}" for k in shown if scores.get(k) is not None)
        return f"{steps} steps in {self.layout.gpvae}; held-out end: {held}"

    def drive(self) -> str:
        from jaxhead.data.cache import save_npz
        from jaxhead.data.media import write_video
        from jaxhead.nerf import render_video

        written = []
        trained = self._trained_run()
        fps = float(trained.config.data.fps)
        for audio_path in self.audio:
            out = self.layout.speech(audio_path, self.pose_from)
            if out.exists():
                written.append(str(out))
                continue
            audio = render_video.load_driving_audio(audio_path)
            pose_blink = None
            if self.pose_from == "gpvae":
                count = render_video.num_audio_frames(trained.config, audio)
                pose_blink = render_video.generated_pose_blink(
                    trained, self.pose_model, audio, count
                )
                pose, blink = pose_blink
                arrays = {"pose": pose, "blink": blink, "fps": np.float32(fps)}
                save_npz(out.with_suffix(".npz"), arrays)
            frames = render_video.drive(trained, audio, identity=0, pose_blink=pose_blink)
            written.append(str(write_video(out, frames, fps, audio)))
        return ", ".join(written)

    # --- the whole run ----------------------------------------------------------------------

    def done(self, state: dict, name: str) -> bool:
        """A step is done when ``avatar.json`` says so and its outputs are there."""
        if name not in state.get("steps", {}):
            return False
        if name == "preprocess":
            try:
                info = json.loads((self.layout.data / "preprocess.json").read_text())
            except (OSError, ValueError):
                return False
            return bool(info.get("complete"))
        if name == "nerf":
            return _finished(self.layout.nerf, int(self.nerf.train.steps))
        if name == "evaluate":
            return (self.layout.nerf / "eval.md").exists() and state["steps"][name].get(
                "nerf_step"
            ) == state["steps"].get("nerf", {}).get("step")
        if name == "demo":
            return self.layout.heldout.exists()
        if name == "gpvae":
            before = state["steps"][name].get("init_from")
            if before != self.gpvae_workdir_resolved:
                raise WorkdirConflictError(
                    f"{self.layout.gpvae} was fine-tuned from {before}, not "
                    f"{self.gpvae_workdir_resolved}; choose a new --workdir or move "
                    f"{self.layout.gpvae} away"
                )
            return _finished(self.layout.gpvae, self.gpvae_finetune_steps)
        return all(self.layout.speech(a, self.pose_from).exists() for a in self.audio)

    @property
    def gpvae_workdir_resolved(self) -> str | None:
        if not self.gpvae_workdir:
            return None
        return str(pathlib.Path(self.gpvae_workdir).expanduser().resolve())

    def wanted(self, name: str) -> bool:
        """Whether the step is part of this run (the optional ones need their inputs)."""
        if name == "gpvae":
            return self.gpvae_finetune_steps > 0
        if name == "drive":
            return bool(self.audio)
        return True

    def run(self) -> dict:
        root = check_workdir_path(self.layout.root)
        state = _read_state(self.layout)
        _check_inputs(state, self.inputs, self.layout)
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.ExitStack() as stack:
            stack.enter_context(lock_workdir(root))
            state = {**state, "inputs": self.inputs}
            state.setdefault("steps", {})
            self._save(state)
            actions = {
                "preprocess": self.preprocess, "nerf": self.train_nerf,
                "evaluate": self.evaluate, "demo": self.demo, "gpvae": self.finetune_gpvae,
                "drive": self.drive,
            }  # fmt: skip
            names = [s for s in STEPS if self.wanted(s)]
            for number, name in enumerate(names, 1):
                head = f"[{number}/{len(names)}] {name}:"
                if self.done(state, name):
                    self.say(f"{head} done ({state['steps'][name].get('summary', '')})")
                    continue
                self.say(f"{head} running ...")
                began = time.perf_counter()
                summary = actions[name]()
                seconds = time.perf_counter() - began
                record = {"summary": summary, "seconds": round(seconds, 1)}
                if name == "nerf":
                    record["step"] = int(self.nerf.train.steps)
                if name == "evaluate":
                    record["nerf_step"] = state["steps"].get("nerf", {}).get("step")
                if name == "gpvae":
                    record["init_from"] = self.gpvae_workdir_resolved
                state["steps"][name] = record
                self._save(state)
                self.say(f"{head} done in {seconds:.0f} s ({summary})")
        if not hasattr(self, "table"):
            eval_md = self.layout.nerf / "eval.md"
            self.table = eval_md.read_text() if eval_md.exists() else ""
        return {**state, "table": self.table}
