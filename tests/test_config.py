"""Config scaffolding: variant parsing, shared blocks, locking."""

import pytest

from jaxhead.train.config import base_config, parse_arg


def test_parse_arg_flags_and_typed_values():
    arg = parse_arg("smoke,res=64,lr=0.5,name=x", smoke=False, res=128, lr=1.0, name="y")
    assert arg.smoke is True and arg.res == 64 and arg.lr == 0.5 and arg.name == "x"
    assert parse_arg(None, smoke=False).smoke is False


def test_parse_arg_rejects_unknown_variant():
    with pytest.raises(ValueError, match="unknown config variant 'smok'.*smoke"):
        parse_arg("smok", smoke=False)


def test_base_config_blocks_and_lock():
    config = base_config(seed=3, steps=7)
    assert config.seed == 3 and config.train.steps == 7
    assert {"train", "optim", "mesh", "distributed"} <= set(config.keys())
    config.lock()
    with pytest.raises(AttributeError):
        config.no_such_key = 1
    config.train.steps = 9  # existing fields stay overridable
    assert config.train.steps == 9


def test_whole_frames_default_to_the_hash_grid_and_the_crop_to_the_mlp():
    from jaxhead.nerf.config import video_config, voca_config

    assert video_config("frame=full").model.encoding == "hash"
    full = video_config("frame=full").model
    assert (full.grid_levels, full.grid_max_resolution) == (8, 256)  # the measured CPU grid
    planes = video_config("frame=full,field=triplane").model
    assert (planes.encoding, planes.grid_levels, planes.grid_max_resolution) == ("triplane", 8, 256)
    # The MLP over whole frames draws the person only with the mask term at weight 1.
    assert video_config("frame=full,field=frequency").loss.mask == 1.0
    assert video_config("frame=full").loss.mask == video_config(None).loss.mask == 0.1
    for field in ("hash", "triplane"):  # the synthetic set's 32² map: a grid up to 128
        grid = voca_config(f"field={field}").model
        assert (grid.encoding, grid.grid_levels, grid.grid_max_resolution) == (field, 8, 128)
    assert voca_config("field=hash,full").model.grid_levels == 16
    assert video_config("frame=full,full").model.grid_levels == 16  # an accelerator: RAD-NeRF's
    assert video_config("frame=full,field=frequency").model.encoding == "frequency"
    assert video_config(None).model.encoding == "frequency"
    assert video_config("field=triplane").model.encoding == "triplane"
    assert voca_config(None).model.encoding == "frequency"
    # Blinks on whole frames (CPU size, grid fields): the blink's own grid and the frames with
    # the eyes at least half closed oversampled (docs/video.md); off elsewhere.
    for arg in ("frame=full", "frame=full,field=triplane"):
        config = video_config(arg)
        assert config.model.grid_conditions == ("blink",)
        assert (config.model.mouth_grids, config.model.mouth_scale) == (6, 0.5)
        assert (config.data.blink_min, config.data.blink_repeat, config.data.blink_share) == (
            0.5, 8, 0.0,
        )  # fmt: skip
    for arg in ("frame=full,field=frequency", "frame=full,full", "frame=full,smoke", None):
        config = video_config(arg)
        assert config.model.grid_conditions == () and config.data.blink_min == 0.0
        assert (config.model.mouth_grids, config.model.mouth_scale) == (0, 1.0)
