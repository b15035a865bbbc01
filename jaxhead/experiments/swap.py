"""The swap test through the NeRF: identity A rendered with identity B's expression.

Paper 000 claims that its codes are disentangled, so that C_ex of one person drives another
person's face. On the synthetic dataset this can be measured against the renderer's ground
truth, because the generator can draw any combination of factors:

* ``S``: the trained NeRF rendering A's ``C_id`` / ``C_al`` / ``C_ill`` with B's per-frame
  ``C_ex``, F_lip and blink, from B's camera (B's head pose as camera motion);
* ``T_swap``: the synthetic head of A (A's shape and albedo, A's lighting) animated with B's
  expression factors (jaw opening, lip rounding, blink) at that frame and posed like B;
* ``T_B``: B's own ground-truth frame (the input whose expression is transferred);
* ``T_closed``: A under the same pose with the neutral expression (mouth closed, eyes open).

Reported per (A, B) pair and averaged: ``psnr_vs_swap_truth`` vs ``psnr_vs_source`` (A's
identity and albedo kept: S is closer to ``T_swap`` than to ``T_B``) and, in the lip region
(:func:`jaxhead.eval.lip.mouth_box` of ``T_swap``'s landmarks), ``mouth_psnr_vs_swap_truth``
vs ``mouth_psnr_vs_closed`` (B's mouth opening taken: S's mouth is closer to A with B's
opening than to A with a closed mouth). B's frames are the ``frames`` frames of B's first
training sentence with the widest jaw opening, so the mouth is visibly open.

    python scripts/swap_test.py --workdir runs/voca
"""

from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np

from jaxhead.data import head_model, raster, voca_frames
from jaxhead.data.voca import load_voca
from jaxhead.eval.lip import mouth_box
from jaxhead.nerf import render_video
from jaxhead.nerf.heldout import render_keys


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    diff = (a - b) if mask is None else (a - b)[mask]
    return float(-10.0 * np.log10(max(float(np.mean(np.square(diff))), 1e-10)))


class SwapScene:
    """The synthetic generator behind a trained run's training frames: renders any identity
    with any expression under a training frame's pose, camera and lighting."""

    def __init__(self, trained: render_video.Trained):
        config = trained.config
        if config.data.kind != "voca" or config.data.root:
            raise ValueError(
                "the swap test needs the ground-truth factors of the embedded synthetic dataset "
                "(data.kind 'voca' with an empty config.data.root)"
            )
        self.trained = trained
        self.voca = load_voca(voca_frames.dataset_root(config.data, progress=False))
        if self.voca.factors is None:
            raise ValueError(f"{self.voca.root} has no factors.npz: not a synthetic dataset")
        self.arrays = trained.train_frames.arrays
        self.data_rows = voca_frames.dataset_rows(config.data, trained.train_frames, self.voca)
        num_v = np.asarray(self.voca.verts[0]).shape[0]
        self.topology = head_model.build_topology()
        if self.topology.num_vertices != num_v:
            raise ValueError(
                f"the dataset's meshes have {num_v} vertices, the default head topology "
                f"{self.topology.num_vertices}: regenerate the synthetic dataset"
            )
        _, self.distance = voca_frames.camera_setup(self.voca, config.data)
        self.resolution = int(config.data.resolution)
        self.supersample = int(config.data.supersample)
        self.subjects = voca_frames.selected_subjects(self.voca, config.data)

    def expression(self, row: int) -> np.ndarray:
        """``(jaw_open, lip_round, blink)`` of training frame ``row``."""
        return self.voca.factors["expression"][self.data_rows[row]]

    def render(self, identity: int, row: int, expression) -> tuple[np.ndarray, np.ndarray]:
        """``identity``'s head (shape, albedo, lighting of its first training sentence) with
        ``expression``, posed and seen as training frame ``row``; ``(rgb, landmarks)``."""
        f, r = self.voca.factors, self.data_rows[row]
        own = self.data_rows[render_video.identity_rows(self.trained, identity)[0]]
        template = self.voca.templates[self.subjects[identity]]
        verts = head_model.animate(self.topology, template, np.asarray(expression)[None])
        posed = head_model.pose_vertices(verts[0], f["head_rotation"][r], f["head_translation"][r])
        c2w = raster.orbit_cameras([float(self.arrays["yaw_deg"][row])], 0.0, self.distance)[0]
        out = raster.render_mesh(
            posed, self.voca.faces, self.arrays["intrinsics"][row], c2w,
            self.resolution, self.resolution, vertex_colors=f["vertex_albedo"][identity],
            sh=f["illumination"][own], landmark_indices=f["landmark_indices"],
            background=(1.0, 1.0, 1.0), supersample=self.supersample,
        )  # fmt: skip
        return np.clip(out.rgb, 0.0, 1.0).astype(np.float32), out.landmarks


def swap_test(trained: render_video.Trained, frames: int = 8, max_identities: int = 4) -> dict:
    """Runs the swap test of the module docstring on a trained synthetic-data NeRF run."""
    scene = SwapScene(trained)
    source, arrays, res = trained.train_frames, scene.arrays, scene.resolution
    jaw_open = scene.voca.factors["jaw_open"]
    identities = list(range(min(source.num_identities, max_identities)))
    pairs, shown = [], []
    for a, b in itertools.permutations(identities, 2):
        rows_b = render_video.identity_rows(trained, b)
        jaw = jaw_open[scene.data_rows[rows_b]]
        rows = np.sort(rows_b[np.argsort(-jaw, kind="stable")[:frames]])
        inputs = {
            k: np.stack([source[int(r)][k] for r in rows]) for k in render_keys(trained.setup)
        }
        codes = render_video.codes_for_rows(trained, rows, a, ex_rows=rows)
        swapped = render_video.render(trained, inputs, codes)
        scores = {k: [] for k in ("swap", "source", "mouth_swap", "mouth_closed")}
        for j, row in enumerate(rows):
            truth, landmarks = scene.render(a, row, scene.expression(row))
            closed, _ = scene.render(a, row, np.zeros(3, np.float32))
            own = arrays["image"][row].astype(np.float32) / 255.0
            box = mouth_box(landmarks, res, res)
            scores["swap"].append(_psnr(swapped[j], truth))
            scores["source"].append(_psnr(swapped[j], own))
            scores["mouth_swap"].append(_psnr(swapped[j], truth, box))
            scores["mouth_closed"].append(_psnr(swapped[j], closed, box))
            if j == 0 and len(shown) < 4:
                shown.append(np.concatenate([swapped[j], truth, own, closed], axis=1))
        pairs.append(
            {
                "identity": a,
                "expression_from": b,
                "frames": len(rows),
                "mean_jaw_open": float(np.mean(jaw_open[scene.data_rows[rows]])),
                "psnr_vs_swap_truth": float(np.mean(scores["swap"])),
                "psnr_vs_source": float(np.mean(scores["source"])),
                "mouth_psnr_vs_swap_truth": float(np.mean(scores["mouth_swap"])),
                "mouth_psnr_vs_closed": float(np.mean(scores["mouth_closed"])),
            }
        )
    keys = [k for k in pairs[0] if k.startswith(("psnr", "mouth"))] if pairs else []
    summary = {k: float(np.mean([p[k] for p in pairs])) for k in keys}
    summary["identity_kept"] = sum(p["psnr_vs_swap_truth"] > p["psnr_vs_source"] for p in pairs)
    summary["mouth_taken"] = sum(
        p["mouth_psnr_vs_swap_truth"] > p["mouth_psnr_vs_closed"] for p in pairs
    )
    summary["pairs"] = len(pairs)
    return {"summary": summary, "pairs": pairs, "grid": shown}


def write_swap_report(workdir: str | pathlib.Path, frames: int = 8) -> dict:
    """Runs :func:`swap_test` on a NeRF workdir; merges ``swap`` into ``eval.json`` and writes
    ``swap.md`` and ``samples/swap.png`` (rows: S | T_swap | T_B | T_closed)."""
    from PIL import Image

    from jaxhead.train.workdir import write_json_atomic

    workdir = pathlib.Path(workdir)
    trained = render_video.load_trained(workdir)
    result = swap_test(trained, frames=frames)
    grid = result.pop("grid")
    if grid:
        path = workdir / "samples" / "swap.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = np.clip(np.concatenate(grid, axis=0), 0.0, 1.0)
        Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    eval_path = workdir / "eval.json"
    results = json.loads(eval_path.read_text()) if eval_path.exists() else {}
    results["swap"] = {**result, "step": trained.step}
    write_json_atomic(eval_path, results)
    lines = [
        f"Swap test at step {trained.step} (PSNR in dB; see jaxhead/experiments/swap.py)",
        "",
        "| A | ex of B | jaw | S vs T_swap | S vs T_B | mouth S vs T_swap | mouth S vs T_closed |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["pairs"]:
        lines.append(
            f"| {p['identity']} | {p['expression_from']} | {p['mean_jaw_open']:.2f} "
            f"| {p['psnr_vs_swap_truth']:.2f} | {p['psnr_vs_source']:.2f} "
            f"| {p['mouth_psnr_vs_swap_truth']:.2f} | {p['mouth_psnr_vs_closed']:.2f} |"
        )
    s = result["summary"]
    lines += [
        "",
        f"A's identity kept (S closer to T_swap than to T_B): {s['identity_kept']}/{s['pairs']} "
        f"pairs; B's mouth taken (mouth closer to T_swap than to T_closed): "
        f"{s['mouth_taken']}/{s['pairs']} pairs.",
    ]
    (workdir / "swap.md").write_text("\n".join(lines) + "\n")
    return results["swap"]
