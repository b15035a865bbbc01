"""Evaluate a trained head-NeRF run on its held-out frames: the full metric suite.

    python scripts/evaluate.py --workdir runs/voca
    python scripts/evaluate.py --workdir runs/french --split val \\
        --mediapipe_python .venv-mediapipe/bin/python --sync_workdir runs/sync
    python scripts/evaluate.py --workdir runs/french --pose_from gpvae --gpvae_workdir runs/gpvae

PSNR / SSIM and the lip region's PSNR / L1; LPIPS (with --lpips_trunk [--lpips_lin]); FID (not
computed: InceptionV3 is not ported); with MediaPipe Face Mesh (in this environment, or
--mediapipe_python / $JAXHEAD_MEDIAPIPE_PYTHON): mouth LMD, mouth-opening traces, blinks per second
from the eye-aspect ratio, and the AV offset / confidence of our sync stage (--sync_workdir, else
the run's config.sync.init_from); SyncNet (syncnet_python) needs --syncnet_weights; D-Rot / D-Pos
with --pose_from gpvae. Metrics that cannot be computed say why. Definitions: docs/video.md.

Writes WORKDIR/eval.json (merged with what is there), WORKDIR/eval.md (a table) and
WORKDIR/samples/eval_<split>_traces.png.
"""

from absl import flags

from jaxhead.nerf import evaluate
from jaxhead.train import cli

_WORKDIR = cli.define_workdir_flag()
_SPLIT = flags.DEFINE_multi_enum(
    "split", None, ["val", "val_views"], "Held-out split(s) to score (default: config.eval.splits)."
)
_MEDIAPIPE = flags.DEFINE_string(
    "mediapipe_python", None, "Python of a MediaPipe environment (for LMD, sync, blinks)."
)
_SYNC = flags.DEFINE_string("sync_workdir", None, "Sync-stage run scoring AV offset/confidence.")
_LPIPS_TRUNK = flags.DEFINE_string("lpips_trunk", None, "torchvision alexnet/vgg16 state dict.")
_LPIPS_LIN = flags.DEFINE_string("lpips_lin", None, "lpips package weights/v0.1/<net>.pth.")
_LPIPS_NET = flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS trunk.")
_SYNCNET = flags.DEFINE_string("syncnet_weights", None, "syncnet_python syncnet_v2, re-saved.")
_POSE_FROM = flags.DEFINE_enum(
    "pose_from", "source", ["source", "gpvae"], "Score the true pose, or a GP-VAE generated one."
)
_GPVAE = flags.DEFINE_string("gpvae_workdir", None, "GP-VAE run for --pose_from=gpvae.")
_SEED = flags.DEFINE_integer("seed", 0, "Sample of the generated pose/blink.")


def main(argv):
    del argv
    lpips = {"net": _LPIPS_NET.value, "trunk": _LPIPS_TRUNK.value, "lin": _LPIPS_LIN.value}
    results = evaluate.evaluate_workdir(
        _WORKDIR.value,
        tuple(_SPLIT.value) if _SPLIT.value else None,
        mediapipe_python=_MEDIAPIPE.value,
        sync_workdir=_SYNC.value,
        lpips=lpips,
        syncnet_weights=_SYNCNET.value,
        pose_from=_POSE_FROM.value,
        gpvae_workdir=_GPVAE.value,
        seed=_SEED.value,
    )
    print(results["table"])


if __name__ == "__main__":
    cli.run(main)
