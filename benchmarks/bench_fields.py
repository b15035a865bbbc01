"""Time to quality of the head fields: held-out PSNR against training wall time, side by side.

    python benchmarks/bench_fields.py --workdir W                        # synthetic default
    python benchmarks/bench_fields.py --workdir W --fields frequency,hash
    python benchmarks/bench_fields.py --workdir W --video_root DIR \\
        --train_seconds 40 --val_seconds 10                             # a preprocessed video
    python benchmarks/bench_fields.py --workdir W --video_root DIR --frame full \
        --fields frequency,hash --eval_every 500 --validate_stride 5       # whole 512² frames
    python benchmarks/bench_fields.py --workdir W --report_only         # table + plot of W

One run: the sync stage that supplies F_lip is trained once (``W/sync``, the NeRF config's own
sync stage, :mod:`jaxhead.nerf.own_sync`) and shared, then each field (``frequency``: NeRF's MLP;
``hash``; ``triplane``) trains the same config (``configs/voca.py:field=F`` or
``configs/video.py:field=F``) in its own process, one after another, into ``W/<field>``, with the
held-out protocol run every ``--eval_every`` steps (``config.train.eval_every``): its time is left
out of ``train_time_s``, the training wall-clock time (compilation, data and checkpoints
included). Runs resume and finished runs are reused, so an interrupted benchmark continues.

Reported (stdout, ``W/report.md``, ``W/report.json``, and the plot ``--plot``): per field the
final held-out scores (``eval.json``), the training time, the time at which the held-out PSNR
first reaches the MLP's final PSNR and a fixed target (``--target``, 31 dB), linearly
interpolated between validations, and the machine's load average around each run (the runs are
sequential: a busy machine slows whichever run it overlaps).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIELDS = ("frequency", "hash", "triplane")
SCORES = ("psnr", "ssim", "mouth_psnr", "mouth_psnr_open", "mouth_motion_r", "mouth_motion_r_truth")


def config_arg(args, field: str) -> str:
    if args.video_root:
        return f"{ROOT / 'configs' / 'video'}.py:frame={args.frame},field={field}"
    return f"{ROOT / 'configs' / 'voca'}.py:field={field}"


def overrides(args) -> list[str]:
    out = [
        f"--config.train.steps={args.steps}",
        f"--config.train.eval_every={args.eval_every}",
        f"--config.eval.validate_stride={args.validate_stride}",
        f"--config.train.checkpoint_every={args.eval_every}",
        "--config.train.sample_every=0",
        "--config.train.progress=False",
    ]
    if args.video_root:
        out += [
            f"--config.data.root={args.video_root}",
            f"--config.data.train_seconds={args.train_seconds}",
            f"--config.data.val_seconds={args.val_seconds}",
        ]
    return out + list(args.override)


def train_sync(args, workdir: pathlib.Path) -> dict:
    """The NeRF config's own sync stage, trained once into ``W/sync`` (timed)."""
    from jaxhead.nerf import own_sync
    from jaxhead.nerf.config import video_config, voca_config
    from jaxhead.sync import stage as sync_stage

    config = video_config(f"frame={args.frame}") if args.video_root else voca_config(None)
    if args.video_root:
        with config.unlocked():
            config.data.update(
                root=args.video_root, train_seconds=args.train_seconds,
                val_seconds=args.val_seconds,
            )  # fmt: skip
    began = time.perf_counter()
    sync_stage.train(own_sync.own_sync_config(config), workdir / "sync")
    return {"seconds": time.perf_counter() - began}


def train_field(args, workdir: pathlib.Path, field: str) -> dict:
    run = workdir / field
    cmd = [
        sys.executable, str(ROOT / "scripts" / "train_nerf.py"),
        f"--config={config_arg(args, field)}", f"--workdir={run}", *overrides(args),
        f"--config.sync.init_from={(workdir / 'sync').resolve()}", "--config.sync.train=False",
    ]  # fmt: skip
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    print(f"[{field}] {' '.join(cmd[1:])}", flush=True)
    with (workdir / f"{field}.log").open("a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return {
        "wall_s": time.perf_counter() - began,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def read_run(run: pathlib.Path) -> dict:
    from jaxhead.train.metrics import read_metrics

    records = read_metrics(run / "metrics.jsonl")
    curve = [
        {"step": r["step"], "time_s": r["train_time_s"], "psnr": r["val_psnr"],
         "mouth_motion_r": r.get("val_mouth_motion_r"),
         "mouth_psnr_open": r.get("val_mouth_psnr_open")}
        for r in records if "val_psnr" in r
    ]  # fmt: skip
    train = [r for r in records if "loss" in r]
    final = json.loads((run / "eval.json").read_text()) if (run / "eval.json").exists() else {}
    return {
        "curve": curve,
        "train_time_s": train[-1]["train_time_s"] if train else None,
        "steps": train[-1]["step"] if train else 0,
        "final": final,
    }


def time_to(curve: list[dict], target: float) -> float | None:
    """Training time at which the held-out PSNR first reaches ``target`` (linear between
    validations, from time 0 at PSNR 0); None if it never does."""
    previous = (0.0, 0.0)
    for point in curve:
        if point["psnr"] >= target:
            (t0, p0), t1, p1 = previous, point["time_s"], point["psnr"]
            return t0 + (t1 - t0) * (target - p0) / max(p1 - p0, 1e-9)
        previous = (point["time_s"], point["psnr"])
    return None


def report(workdir: pathlib.Path, fields, target: float, timings: dict, split: str) -> str:
    runs = {f: read_run(workdir / f) for f in fields if (workdir / f).exists()}
    reference = runs.get("frequency", {}).get("final", {}).get(split, {}).get("psnr")
    mlp_time = runs.get("frequency", {}).get("train_time_s")
    lines = [
        f"Held-out split `{split}`; times are training wall-clock seconds (`train_time_s`).",
        "",
        "| field | steps | train time | final PSNR | SSIM | lip PSNR | open-mouth lip PSNR "
        f"| mouth-motion r (truth) | time to MLP's final PSNR | time to {target:g} dB "
        "| load avg before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def fmt_time(t):
        if t is None:
            return "not reached"
        share = f" ({t / mlp_time:.2f}x MLP)" if mlp_time else ""
        return f"{t / 60:.1f} min{share}"

    for field, run in runs.items():
        scores = run["final"].get(split, {})
        load = timings.get(field, {})
        lines.append(
            f"| {field} | {run['steps']} | {(run['train_time_s'] or 0) / 60:.1f} min "
            f"| {scores.get('psnr', float('nan')):.2f} | {scores.get('ssim', float('nan')):.4f} "
            f"| {scores.get('mouth_psnr', float('nan')):.2f} "
            f"| {scores.get('mouth_psnr_open', float('nan')):.2f} "
            f"| {scores.get('mouth_motion_r', float('nan')):.3f} "
            f"({scores.get('mouth_motion_r_truth', float('nan')):.3f}) "
            f"| {fmt_time(time_to(run['curve'], reference)) if reference else '-'} "
            f"| {fmt_time(time_to(run['curve'], target))} "
            f"| {load.get('load_before', float('nan')):.1f} / "
            f"{load.get('load_after', float('nan')):.1f} |"
        )
    lines += ["", "Held-out PSNR during training (step: time, PSNR):", ""]
    for field, run in runs.items():
        points = ", ".join(
            f"{p['step']}: {p['time_s'] / 60:.1f} min {p['psnr']:.2f}" for p in run["curve"]
        )
        lines.append(f"- {field}: {points}")
    (workdir / "report.json").write_text(json.dumps({"runs": runs, "timings": timings}, indent=1))
    return "\n".join(lines)


def plot(workdir: pathlib.Path, fields, path: pathlib.Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for field in fields:
        if not (workdir / field).exists():
            continue
        run = read_run(workdir / field)
        curve = run["curve"]
        final = run["final"].get("val", {}).get("psnr")
        if not curve and final is not None and run["train_time_s"]:
            # A run without validations during training: its final score only.
            curve = [{"time_s": run["train_time_s"], "psnr": final}]
            field = f"{field} (final only)"
        ax.plot([p["time_s"] / 60 for p in curve], [p["psnr"] for p in curve], "o-", label=field)
    ax.set_xlabel("training wall time (min)")
    ax.set_ylabel("held-out PSNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--fields", default=",".join(FIELDS))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--eval_every", type=int, default=250)
    parser.add_argument("--target", type=float, default=31.0)
    parser.add_argument("--video_root", default="")
    parser.add_argument("--train_seconds", type=float, default=40.0)
    parser.add_argument("--val_seconds", type=float, default=10.0)
    parser.add_argument("--frame", default="crop", choices=("crop", "full"), help="a video's frame")
    parser.add_argument(
        "--validate_stride", type=int, default=1,
        help="validations render every k-th held-out frame (the final evaluation: all)",
    )  # fmt: skip
    parser.add_argument("--plot", type=pathlib.Path, default=None)
    parser.add_argument("--report_only", action="store_true")
    parser.add_argument("--override", action="append", default=[], help="--config.X=Y, repeatable")
    args = parser.parse_args()
    fields = [f for f in args.fields.split(",") if f]
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        parser.error(f"unknown fields {unknown}; choose from {FIELDS}")
    workdir = args.workdir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    timings_path = workdir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if not args.report_only:
        sync = train_sync(args, workdir)
        timings.setdefault("sync", sync)
        for field in fields:
            timings[field] = train_field(args, workdir, field)
            timings_path.write_text(json.dumps(timings, indent=1))
    text = report(workdir, fields, args.target, timings, "val")
    (workdir / "report.md").write_text(text + "\n")
    print(text)
    if args.plot:
        title = "french.mp4" if args.video_root else "synthetic default (configs/voca.py)"
        plot(workdir, fields, args.plot, title)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
