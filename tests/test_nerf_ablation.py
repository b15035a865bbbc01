"""The NeRF ablation's arms and table (jaxhead.experiments.nerf_ablation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_nerf_stage import smoke_config

from jaxhead.experiments import nerf_ablation as ablation


def test_arm_configs(tmp_path):
    config = smoke_config(tmp_path)
    no_lip = ablation.arm_config(config, "no_lip", seed=3)
    assert no_lip.model.lip_dim == 0 and no_lip.seed == 3 and not no_lip.sync.init_from
    assert config.model.lip_dim > 0 and config.seed == 0  # the given config is not changed
    both = ablation.arm_config(config, "sync_dis", sync_workdir="S", extractor_workdir="E")
    assert both.sync.init_from == "S" and both.disentangle.init_from == "E"
    assert both.model.lip_dim == config.model.lip_dim and both.seed == config.seed
    base = ablation.arm_config(config, "base", sync_workdir="S", extractor_workdir="E")
    assert not base.sync.init_from and not base.disentangle.init_from
    with pytest.raises(ValueError, match="arm 'sync' needs --sync_workdir"):
        ablation.arm_config(config, "sync")
    with pytest.raises(ValueError, match="unknown arm 'synk'"):
        ablation.arm_config(config, "synk")
    assert ablation.run_name("sync", None) == "sync"
    assert ablation.run_name("sync", 2) == "sync_seed2"


def _write(root, name, psnr, mouth, swap=False):
    run = root / name
    run.mkdir(parents=True)
    split = {"psnr": psnr, "ssim": 0.8, "mouth_psnr": mouth, "mouth_l1": 0.07,
             "mouth_motion_r": 0.6, "frames": 10}  # fmt: skip
    result = {"step": 800, "val": split}
    if swap:
        result["swap"] = {"summary": {"psnr_vs_swap_truth": 25.0, "psnr_vs_source": 17.0,
                                      "mouth_psnr_vs_swap_truth": 21.0,
                                      "mouth_psnr_vs_closed": 24.0}}  # fmt: skip
    (run / "eval.json").write_text(json.dumps(result))


def test_tabulate_over_seeds(tmp_path):
    _write(tmp_path, "base_seed0", 22.0, 21.0)
    _write(tmp_path, "base_seed1", 24.0, 20.0, swap=True)
    _write(tmp_path, "sync_seed0", 23.0, 22.0)  # sync_seed1 not finished
    summary, table = ablation.tabulate(tmp_path, ["base", "sync", "dis"], [0, 1])
    assert set(summary) == {"base", "sync"}
    base = summary["base"]["val"]
    assert base["psnr"]["mean"] == pytest.approx(23.0) and base["psnr"]["std"] == pytest.approx(1.0)
    assert base["mouth_psnr"]["values"] == [21.0, 20.0]
    assert summary["base"]["runs"] == ["base_seed0", "base_seed1"]
    assert summary["sync"]["val"]["mouth_psnr"]["std"] == 0.0
    assert "| base | val | 2 | 23.00 ± 1.00 |" in table
    assert "| sync | val | 1 | 23.00 |" in table
    assert "| base_seed1 | 25.00 | 17.00 | 21.00 | 24.00 |" in table
    assert "val_views" not in summary["base"]
    # One seed: the arm's own folder.
    _write(tmp_path, "no_lip", 20.0, 18.0)
    summary, table = ablation.tabulate(tmp_path, ["no_lip"])
    assert np.isclose(summary["no_lip"]["val"]["mouth_psnr"]["mean"], 18.0)
