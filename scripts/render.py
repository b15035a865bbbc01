"""Render a trained head NeRF into an mp4 with sound (VOCASET-format and video runs).

python scripts/render.py --workdir runs/voca --audio speech.wav --out out.mp4
python scripts/render.py --workdir runs/voca --sequence 0 --out heldout.mp4
python scripts/render.py --workdir runs/voca --audio speech.wav --yaw_sweep 30 --out sweep.mp4
python scripts/render.py --workdir runs/voca --swap_expression_from 1 --identity 0 --out swap.mp4
python scripts/render.py --workdir runs/french --audio speech.wav --pose_from gpvae \\
    --gpvae_workdir runs/gpvae --out generated_pose.mp4 [--pose_out generated_pose.npz]

With --audio the head pose and blinks are replayed from the run's training frames (a video run:
the video's own motion) unless --pose_from gpvae generates them from the audio.
"""

import numpy as np
from absl import flags

from jaxhead.data.cache import save_npz
from jaxhead.data.media import check_output, write_video
from jaxhead.nerf import render_video
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_OUT = flags.DEFINE_string("out", None, "Output .mp4.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
_AUDIO = flags.DEFINE_string(
    "audio", None, "Driving audio (wav/mp3/flac/mp4), resampled to 16 kHz."
)
_SEQUENCE = flags.DEFINE_integer(
    "sequence", None, "Re-render held-out sequence N beside the truth."
)
_YAW = flags.DEFINE_float("yaw_sweep", 0.0, "Orbit the camera from -DEG to +DEG (with --audio).")
_SWAP = flags.DEFINE_integer("swap_expression_from", None, "Expression of this identity.")
_IDENTITY = flags.DEFINE_integer("identity", 0, "Which trained identity to render.")
_POSE_FROM = flags.DEFINE_enum(
    "pose_from", "source", ["source", "gpvae"], "With --audio: replay pose/blink, or generate them."
)
_GPVAE = flags.DEFINE_string("gpvae_workdir", None, "GP-VAE run for --pose_from=gpvae.")
_SEED = flags.DEFINE_integer("seed", 0, "Sample of the generated pose/blink.")
_RECENTER = flags.DEFINE_float(
    "pose_recenter_s",
    0.0,
    "With --pose_from gpvae: replace the generated motion slower than this many seconds by the "
    "person's rest pose (0: as generated).",
)
_POSE_OUT = flags.DEFINE_string(
    "pose_out", None, "With --pose_from gpvae: also write the generated pose/blink (.npz)."
)


def main(argv):
    del argv
    modes = [_AUDIO.value is not None, _SEQUENCE.value is not None, _SWAP.value is not None]
    if sum(modes) != 1:
        raise SystemExit("error: give exactly one of --audio, --sequence, --swap_expression_from")
    if _POSE_FROM.value == "gpvae" and (_AUDIO.value is None or not _GPVAE.value):
        raise SystemExit("error: --pose_from gpvae needs --audio and --gpvae_workdir")
    if _POSE_OUT.value and _POSE_FROM.value != "gpvae":
        raise SystemExit("error: --pose_out writes a generated pose: give --pose_from gpvae")
    check_output(_OUT.value, overwrite=_OVERWRITE.value)  # before minutes of rendering
    trained = render_video.load_trained(_WORKDIR.value)
    fps = float(trained.config.data.fps)
    audio = None
    if _AUDIO.value is not None:
        audio = render_video.load_driving_audio(_AUDIO.value)
        pose_blink = None
        if _POSE_FROM.value == "gpvae":
            count = render_video.num_audio_frames(trained.config, audio)
            pose_blink = render_video.generated_pose_blink(
                trained, _GPVAE.value, audio, count, seed=_SEED.value, identity=_IDENTITY.value,
                recenter_s=_RECENTER.value,
            )  # fmt: skip
            if _POSE_OUT.value:  # the head pose (GP-VAE frame, docs/gpvae.md) and blink rendered
                pose, blink = pose_blink
                save_npz(_POSE_OUT.value, {"pose": pose, "blink": blink, "fps": np.float32(fps)})
        frames = render_video.drive(
            trained, audio, identity=_IDENTITY.value, yaw_sweep=_YAW.value, pose_blink=pose_blink
        )
    elif _SEQUENCE.value is not None:
        frames, audio = render_video.held_out_sequence(trained, _SEQUENCE.value)
    else:
        frames = render_video.swap_expression(trained, _IDENTITY.value, _SWAP.value)
    path = write_video(_OUT.value, frames, fps, audio, overwrite=_OVERWRITE.value)
    sound = ", with audio" if audio is not None else ""
    print(f"Wrote {path} ({len(frames)} frames at {fps:g} fps{sound}).")


if __name__ == "__main__":
    cli.run(main)
