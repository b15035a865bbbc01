"""From one talking-head video to an avatar that says new speech, in one command (resumable).

    python scripts/avatar.py VIDEO --workdir runs/me [--val_seconds 10] [--audio new.wav]
    python scripts/avatar.py VIDEO --workdir runs/me \\
        --config configs/video.py:frame=full,field=frequency --config.train.steps=2000 \\
        --mediapipe_python .venv-mediapipe/bin/python
    python scripts/avatar.py VIDEO --workdir runs/me --audio new.wav --pose_from gpvae \\
        --gpvae_workdir runs/gpvae [--gpvae_finetune_steps 600]

Preprocessing (MediaPipe from --mediapipe_python or $JAXHEAD_MEDIAPIPE_PYTHON), the speaker's
own sync stage, the NeRF (configs/video.py:frame=full: whole 512² frames, unless --config), the
evaluation on the held-out end, a demo of it beside the truth (WORKDIR/heldout.mp4) and, with
--audio, renders of new speech (WORKDIR/speech_<name>.mp4 with the video's own head motion and
blinks; with --pose_from gpvae generated from the speech by the GP-VAE of --gpvae_workdir,
fine-tuned first on this video into WORKDIR/gpvae with --gpvae_finetune_steps N:
WORKDIR/speech_<name>_gpvae.mp4). Each step is skipped once done; one line per step; the scores
table at the end. The stages' own scripts stay usable on WORKDIR/data
and WORKDIR/nerf.
"""

import pathlib

from absl import flags

from jaxhead.avatar import Layout, Pipeline
from jaxhead.train import cli

# Whole frames over the video's background, head and torso from one field (docs/video.md).
_CONFIG = cli.define_config_flag(
    default=str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "video.py")
    + ":frame=full"
)
_WORKDIR = cli.define_workdir_flag()
_VAL = flags.DEFINE_float("val_seconds", None, "Hold out the video's last seconds (default 1/11).")
_MEDIAPIPE = flags.DEFINE_string("mediapipe_python", None, "Python of a MediaPipe environment.")
_AUDIO = flags.DEFINE_multi_string("audio", [], "New speech to render the avatar with.")
_POSE_FROM = flags.DEFINE_enum(
    "pose_from", "source", ["source", "gpvae"],
    "With --audio: replay the video's head motion and blinks, or generate them (GP-VAE).",
)  # fmt: skip
_GPVAE = flags.DEFINE_string(
    "gpvae_workdir", None, "A GP-VAE trained on video folders (docs/gpvae.md)."
)
_FINETUNE = flags.DEFINE_integer(
    "gpvae_finetune_steps", 0,
    "Fine-tune the GP-VAE's audio encoder on this video's training part first (0: use it as is).",
)  # fmt: skip
_PROGRESS = flags.DEFINE_bool("progress", True, "Progress bars inside the steps.")


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: python scripts/avatar.py VIDEO --workdir DIR [flags]")
    pipeline = Pipeline(
        argv[1], Layout(pathlib.Path(_WORKDIR.value)), _CONFIG.value, val_seconds=_VAL.value,
        mediapipe_python=_MEDIAPIPE.value, audio=_AUDIO.value, pose_from=_POSE_FROM.value,
        gpvae_workdir=_GPVAE.value, gpvae_finetune_steps=_FINETUNE.value,
        progress=_PROGRESS.value,
    )  # fmt: skip
    result = pipeline.run()
    print(result["table"])
    print(f"avatar ready in {_WORKDIR.value}: heldout.mp4, nerf/eval.md")


if __name__ == "__main__":
    cli.run(main)
