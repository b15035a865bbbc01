"""The NeRF stage's configuration: data only, one definition of each block and model size.

* :data:`MODEL_SIZES`: the model sizes (``cpu``: the default, trains on 2 CPU cores; ``smoke``:
  the few-second plumbing check; ``full``: NeRF's 8x256 field, 64² features -> 512², for GPUs).
  :class:`HeadNeRFConfig`'s defaults are the ``cpu`` size, :meth:`HeadNeRFConfig.of_size` any.
* :func:`model_block`, :func:`loss_block`, :func:`sync_block`, :func:`disentangle_block`,
  :func:`eval_block`: the ``config.model`` / ``.loss`` / ``.sync`` / ``.disentangle`` / ``.eval``
  blocks of a NeRF config.
* :func:`nerf_config`: the one NeRF config; ``configs/voca.py`` and ``configs/video.py`` are
  :func:`voca_config` and :func:`video_config`, which differ only in their data block and in what
  a monocular video lacks (held-out views, a per-sequence illumination code).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxhead.data.blocks import video_frames_config, voca_frames_config
from jaxhead.train.config import base_config, parse_arg

# The size fields of ``config.model`` per model size (the rest of the block is shared).
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "cpu": dict(
        width=128, depth=4, skip_layer=2, pos_freqs=6, feature_dim=64, render_size=(32, 32),
        num_coarse=16, num_fine=16, upsample=4, upsampler_widths=(64, 32),
        audio_channels=(32, 32, 64, 64),
    ),
    "smoke": dict(
        width=32, depth=2, skip_layer=None, pos_freqs=6, feature_dim=16, render_size=(16, 16),
        num_coarse=8, num_fine=8, upsample=4, upsampler_widths=(16, 8), audio_channels=(8, 8, 8, 8),
    ),
    "full": dict(
        width=256, depth=8, skip_layer=4, pos_freqs=10, feature_dim=256, render_size=(64, 64),
        num_coarse=64, num_fine=64, upsample=8, upsampler_widths=(256, 128, 64),
        audio_channels=(32, 32, 64, 64),
    ),
}  # fmt: skip
_CPU = MODEL_SIZES["cpu"]
# The point encoding (jaxhead.nerf.grid) and the grid's sizes: instant-NGP / RAD-NeRF's hash grid
# (16 levels x 2 features, 2^16 rows) by default; "frequency" is NeRF's positional encoding.
GRID = dict(
    grid_levels=16, grid_features=2, grid_log2_table=16, grid_min_resolution=16,
    grid_max_resolution=1024,
)  # fmt: skip
# A grid-encoded field needs only a small MLP (RAD-NeRF / ER-NeRF: 64 wide).
GRID_TRUNK = dict(width=64, depth=2, skip_layer=None)
FIELDS = ("frequency", "hash", "triplane")
# Keys added to config.model after runs existed, with the value their absence meant: such runs
# resume and render unchanged (jaxhead.train.workdir.config_differences).
ADDED_KEYS = {
    "model.encoding": "frequency",
    **{f"model.{k}": v for k, v in GRID.items()},
    "optim.grid_lr_scale": 1.0,
    "loss.grid_tv": 0.0,
    "model.ex_dropout": 0.0,
    "model.space": "head",
    "model.region_attention": (),
    "model.grid_conditions": (),
    "model.pose_condition": False,
    "model.mouth_grids": 0,
    "model.mouth_scale": 1.0,
    "data.frame": "crop",
    "data.patch": 0,
    "data.patch_mouth": 0.0,
    "data.patch_eyes": 0.0,
    "data.blink_share": 0.0,
    "data.blink_min": 0.0,
    "data.blink_repeat": 1,
    "sync.train": False,
    "sync.train_config": "",
    "sync.context": 0,
}

VIEW_INPUTS = ("none", "ray", "pose")
# Width of the "pose" condition (jaxhead.nerf.render.pose_features: 9 rotation entries and the
# head's direction from the camera).
POSE_FEATURES = 12
BACKGROUNDS = ("learned", "fixed")
SPACES = ("head", "head+camera")


@dataclasses.dataclass(frozen=True)
class HeadNeRFConfig:
    """Sizes and rendering settings of :class:`jaxhead.nerf.model.HeadNeRF`.

    The size fields default to the ``cpu`` size of :data:`MODEL_SIZES`; :meth:`of_size` gives
    another. ``condition_dims`` lists the condition vector's parts in concatenation order; paper
    000 uses ``id, ex, al, ill, lip``; DFA-NeRF (paper 001) uses e.g. ``(("audio_feature", 64),
    ("blink", 8))`` with ``view_input="pose"``.
    """

    condition_dims: tuple[tuple[str, int], ...] = (
        ("id", 32),
        ("ex", 32),
        ("al", 32),
        ("ill", 16),
        ("lip", 64),
    )
    view_input: str = "none"  # none | ray (unit ray direction) | pose (conditions["view"])
    view_dim: int = 3  # size of conditions["view"] for view_input="pose"
    # field
    width: int = _CPU["width"]
    depth: int = _CPU["depth"]
    skip_layer: int | None = _CPU["skip_layer"]
    pos_freqs: int = _CPU["pos_freqs"]
    view_freqs: int = 4
    view_width: int = 64
    feature_dim: int = _CPU["feature_dim"]
    # how points enter the field: "frequency" (NeRF's γ(x)), "hash" or "triplane" grids
    # (jaxhead.nerf.grid; L levels of F features, 2^log2_table rows, resolutions N_min..N_max)
    encoding: str = "frequency"
    grid_levels: int = GRID["grid_levels"]
    grid_features: int = GRID["grid_features"]
    grid_log2_table: int = GRID["grid_log2_table"]
    grid_min_resolution: int = GRID["grid_min_resolution"]
    grid_max_resolution: int = GRID["grid_max_resolution"]
    # volume rendering
    render_size: tuple[int, int] = _CPU["render_size"]
    num_coarse: int = _CPU["num_coarse"]
    num_fine: int = _CPU["num_fine"]
    bound_center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bound_radius: float = 0.2  # scene units: VOCASET/synthetic heads are ~0.25 m across
    chunk_rays: int = 0
    background: str = "learned"  # learned | fixed
    # Where points enter the field: "head" (the head's canonical frame) or "head+camera" (also
    # the camera's frame, for what moves with the camera and not the head: the torso of a full
    # frame; HeadNeRF.render_features).
    space: str = "head"
    background_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # neural renderer
    upsample: int = _CPU["upsample"]
    upsampler_widths: tuple[int, ...] = _CPU["upsampler_widths"]
    upsample_mode: str = "nearest"
    # AD-NeRF audio network producing conditions["lip"] from conditions["audio"]
    audio_net: bool = False
    audio_dim: int = 1024
    audio_channels: tuple[int, ...] = _CPU["audio_channels"]
    # > 0: conditions["lip"] arrives as [B, lip_input_dim] precomputed features (e.g. the sync
    # stage's frozen audio encoder) and a learned linear map, zero-initialised, projects them to
    # the "lip" condition's size: the field starts audio-free and learns how much of F_lip to use.
    lip_input_dim: int = 0
    # Names of condition_dims entries gated per sample by ER-NeRF-style region attention
    # (jaxhead.nerf.field: e.g. ("lip", "blink") lets the audio act near the mouth and the
    # blink near the eyes); empty: every condition enters as one vector per ray.
    region_attention: tuple[str, ...] = ()
    # Conditions whose every channel scales a grid of its own, added to the head-space point
    # encoding (jaxhead.nerf.field: expression-weighted grids, e.g. ("blink",) gives the blink a
    # per-position effect learned at the grid's rate); empty: none. Grid fields only.
    grid_conditions: tuple[str, ...] = ()
    # > 0: a "mouth" condition of this many channels, projected from the precomputed "lip"
    # features (lip_input_dim) by a learned linear map of its own (not zero: its grids start at
    # zero instead), each channel scaling a grid of its own ("mouth" is among grid_conditions).
    mouth_grids: int = 0
    # A constant factor on the mouth projection's output (its channels' scale, and with Adam
    # the step they and the grids they scale take together): the summed grids move the head
    # encoding by about (1 + Σ_k |c_k|) grid steps per step, so more grids want a smaller one.
    mouth_scale: float = 1.0
    # The frame's head pose as a condition (a "pose" entry of condition_dims, POSE_FEATURES
    # wide): jaxhead.nerf.render.pose_features of the camera, standardised by the training
    # frames' pose_mean / pose_std (set from the data by the stage), computed by the model
    # from the cameras it renders unless conditions["pose"] is given.
    pose_mean: tuple[float, ...] = ()
    pose_std: tuple[float, ...] = ()

    def __post_init__(self):
        if self.view_input not in VIEW_INPUTS:
            raise ValueError(f"view_input {self.view_input!r} must be one of {VIEW_INPUTS}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background {self.background!r} must be one of {BACKGROUNDS}")
        names = [name for name, _ in self.condition_dims]
        if len(set(names)) != len(names):
            raise ValueError(f"condition_dims has repeated names: {names}")
        if self.audio_net and "lip" not in names:
            raise ValueError(
                "audio_net=True produces the 'lip' condition; add it to condition_dims"
            )
        if self.lip_input_dim and (self.audio_net or "lip" not in names):
            raise ValueError(
                "lip_input_dim projects precomputed 'lip' features: needs a 'lip' condition and "
                "audio_net=False"
            )
        unknown = sorted(set(self.region_attention) - set(names))
        if unknown:
            raise ValueError(
                f"region_attention names {unknown} are not conditions of this field ({names})"
            )
        dims = dict(self.condition_dims)
        if "pose" in dims:
            if dims["pose"] != POSE_FEATURES:
                raise ValueError(
                    f"the 'pose' condition is {POSE_FEATURES} wide, got {dims['pose']}"
                )
            if len(self.pose_mean) not in (0, POSE_FEATURES) or len(self.pose_std) != len(
                self.pose_mean
            ):
                raise ValueError(
                    f"pose_mean / pose_std must both be empty or {POSE_FEATURES} values, got "
                    f"{len(self.pose_mean)} / {len(self.pose_std)}"
                )
            if any(not s > 0 for s in self.pose_std):
                raise ValueError(f"pose_std must be > 0, got {self.pose_std}")
        if not self.mouth_scale > 0:
            raise ValueError(f"mouth_scale must be > 0, got {self.mouth_scale}")
        if self.mouth_grids < 0:
            raise ValueError(f"mouth_grids must be >= 0, got {self.mouth_grids}")
        if self.mouth_grids and (
            not self.lip_input_dim
            or dict(self.condition_dims).get("mouth") != self.mouth_grids
            or "mouth" not in self.grid_conditions
        ):
            raise ValueError(
                "mouth_grids projects the precomputed 'lip' features (lip_input_dim > 0: a sync "
                "stage with config.sync.projection) to a 'mouth' condition of that many channels "
                "with grids of their own (in grid_conditions)"
            )
        unknown = sorted(set(self.grid_conditions) - set(names))
        if unknown:
            raise ValueError(
                f"grid_conditions names {unknown} are not conditions of this field ({names})"
            )
        if self.grid_conditions and self.encoding == "frequency":
            raise ValueError(
                "grid_conditions add grids to a grid field's encoding; use encoding 'hash' or "
                "'triplane' (configs/video.py:field=hash), or drop grid_conditions"
            )
        if self.bound_radius <= 0:
            raise ValueError(f"bound_radius must be > 0, got {self.bound_radius}")
        if self.encoding not in FIELDS:
            raise ValueError(f"encoding {self.encoding!r} must be one of {FIELDS}")
        if self.space not in SPACES:
            raise ValueError(f"space {self.space!r} must be one of {SPACES}")

    @property
    def condition_dim(self) -> int:
        return sum(dim for _, dim in self.condition_dims)

    @property
    def attended_ranges(self) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` of each ``region_attention`` condition in the condition vector."""
        ranges, start = [], 0
        for name, dim in self.condition_dims:
            if name in self.region_attention:
                ranges.append((start, start + dim))
            start += dim
        return tuple(ranges)

    @property
    def grid_channels(self) -> tuple[int, ...]:
        """The condition-vector channels of the ``grid_conditions``, in order."""
        channels, start = [], 0
        for name, dim in self.condition_dims:
            if name in self.grid_conditions:
                channels.extend(range(start, start + dim))
            start += dim
        return tuple(channels)

    @property
    def grid_size(self) -> tuple[int, int, int, int, int]:
        """``(levels, features, log2_table, min_resolution, max_resolution)`` of the grid."""
        return (
            self.grid_levels, self.grid_features, self.grid_log2_table,
            self.grid_min_resolution, self.grid_max_resolution,
        )  # fmt: skip

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.render_size[0] * self.upsample, self.render_size[1] * self.upsample)

    @classmethod
    def of_size(cls, size: str, **overrides) -> HeadNeRFConfig:
        """The model of :data:`MODEL_SIZES` ``size`` (``"cpu"``, ``"smoke"``, ``"full"``)."""
        if size not in MODEL_SIZES:
            raise ValueError(f"unknown model size {size!r}; known: {sorted(MODEL_SIZES)}")
        return cls(**{**MODEL_SIZES[size], **overrides})

    @classmethod
    def full(cls, **overrides) -> HeadNeRFConfig:
        """GPU-sized: NeRF/AD-NeRF field (8x256, skip at 4, PE 10), 64² features -> 512²."""
        return cls.of_size("full", **overrides)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HeadNeRFConfig:
        """From a plain dict (e.g. ``config.model.to_dict()``); lists become tuples."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown HeadNeRFConfig keys {unknown}; known: {sorted(names)}")

        def freeze(value):
            if isinstance(value, list | tuple):
                return tuple(freeze(v) for v in value)
            return value

        return cls(**{key: freeze(value) for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --- config blocks ------------------------------------------------------------------------------


def model_block(size: str = "cpu", field: str = "frequency", **overrides):
    """The ``config.model`` block at :data:`MODEL_SIZES` ``size`` with the point encoding
    ``field`` (:data:`FIELDS`; a grid gets the small :data:`GRID_TRUNK` MLP); ``overrides``
    replace fields."""
    if size not in MODEL_SIZES:
        raise ValueError(f"unknown model size {size!r}; known: {sorted(MODEL_SIZES)}")
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; known: {FIELDS}")
    block = {
        # Latent code sizes (paper 000: C_id, C_ex, C_al, C_ill); 0 drops a code.
        "codes": {"id": 32, "ex": 16, "al": 32, "ill": 16},
        "lip_dim": 32,  # F_lip (audio network or projected sync features); 0: no F_lip
        # Share of training frames whose C_ex is replaced by the table's mean, the code a
        # held-out frame renders with (jaxhead.nerf.heldout): the field learns to draw those
        # frames' mouths from F_lip instead of from a per-frame code. 0: off.
        "ex_dropout": 0.0,
        "space": "head",  # HeadNeRFConfig.space: "head+camera" for full frames (torso)
        # Conditions gated per sample by ER-NeRF-style region attention (HeadNeRFConfig), e.g.
        # ("lip", "blink"); empty: all enter the field as one vector per ray.
        "region_attention": (),
        # Conditions with a grid of their own (HeadNeRFConfig.grid_conditions), e.g. ("blink",);
        # empty: none.
        "grid_conditions": (),
        # > 0: that many channels projected from F_lip's sync features (a learned linear map,
        # HeadNeRFConfig.mouth_grids) each scale a grid of their own, like the blink grid: the
        # speech gets a per-position effect on the face, NeRFBlendShape's expression grids with
        # the coefficients read from the audio. Needs a grid field and config.sync.projection.
        "mouth_grids": 0,
        # A factor on those channels (HeadNeRFConfig.mouth_scale): with more grids, a smaller
        # one keeps the summed grids' step at that of fewer (docs/video.md).
        "mouth_scale": 1.0,
        # The head pose as a condition of the field (HeadNeRFConfig pose_mean / pose_std,
        # jaxhead.nerf.render.pose_features), so the torso could follow the head; measured on
        # french.mp4 without gain on the torso and at a cost to the mouth (docs/video.md).
        "pose_condition": False,
        "view_input": "none",
        "bound_radius": 0.2,
        **MODEL_SIZES[size],
        "encoding": field,
        **GRID,
        **(GRID_TRUNK if field != "frequency" else {}),
    }
    unknown = sorted(set(overrides) - set(block))
    if unknown:
        raise KeyError(f"unknown model fields {unknown}; known: {sorted(block)}")
    block.update(overrides)
    return ml_collections.ConfigDict(block)


def loss_block() -> ml_collections.ConfigDict:
    """Weights of the loss terms (paper 000 eq. 2 defaults: λ_rec=1, λ_dis=5, λ_v=10)."""
    return ml_collections.ConfigDict(
        {
            "rec": 1.0,
            "dis": 5.0,
            "velocity": 10.0,
            "perceptual": 0.1,  # weight of L_per inside L_rec (VGG or the SSIM fallback)
            "lowres": 1.0,  # low-resolution RGB photometric term
            "background": 1.0,  # whole-image photometric term
            "mask": 0.1,  # accumulation vs head mask
            "code": 1e-3,  # L2 on the latent codes
            # Sampled total variation of a grid field's encoding (HeadField.grid_smoothness);
            # 0: off.
            "grid_tv": 0.0,
            "vgg_weights": "",  # torchvision vgg16 state dict (.pth / .safetensors / .npz)
        }
    )


def sync_block(init_from: str = "", train: bool = True) -> ml_collections.ConfigDict:
    """The ``config.sync`` block: F_lip from a trained sync stage (paper 000 fig. 3).

    ``init_from``: a sync-stage workdir (:func:`jaxhead.sync.stage.load_sync_encoder`). Empty
    with ``train`` (the default): the run trains its own sync stage first, over its own training
    data, into ``WORKDIR/sync`` (:mod:`jaxhead.nerf.own_sync`; ``train_config``: the variant of
    ``configs/sync.py`` it uses); empty without ``train``: no sync module (AD-NeRF's audio
    network, or no F_lip with ``model.lip_dim=0``). ``features``: what the NeRF reads from the
    frozen audio encoder (:mod:`jaxhead.nerf.conditions`): ``"standardized"`` (default: the
    output layer before the final ReLU, standardised per dimension with the training frames'
    statistics), ``"embedding"`` (the sync embedding itself; ~98 % of its entries are zero on the
    synthetic data), ``"pre_activation"`` (unstandardised; norms ~40 stall the fit) or
    ``"normalized"`` (standardised per frame). ``projection`` (default on): a learned,
    zero-initialised linear map of the features to ``config.model.lip_dim``; off: the field
    reads the features as they are. Measured in docs/nerf_ablation.md. ``context``: k > 0 gives
    each frame the features of its k neighbours on each side too, concatenated in time order
    (frame f reads f-k … f+k of its own audio track, the track's ends repeated), so F_lip spans
    (2k+1) frames: the temporal context AD-NeRF's and ER-NeRF's audio attention smooth over,
    here as a learned linear filter inside ``projection`` (docs/video.md).
    """
    return ml_collections.ConfigDict(
        {
            "init_from": init_from,
            "train": train,
            "train_config": "",
            "features": "standardized",
            "projection": True,
            "context": 0,
        }
    )


def disentangle_block(init_from: str = "") -> ml_collections.ConfigDict:
    """The ``config.disentangle`` block: L_dis against the extractor's reference codes.

    ``init_from``: an ``extractor`` workdir (:func:`jaxhead.disentangle.stage.load_extractor`);
    empty: no L_dis (the "w/o L_dis" ablation of paper 000 table 2). ``init_codes``: start the
    NeRF's learnable codes at the extractor's reference codes (paper 000) instead of zeros.
    """
    return ml_collections.ConfigDict({"init_from": init_from, "init_codes": True})


def eval_block(fit_steps: int, splits: tuple[str, ...]) -> ml_collections.ConfigDict:
    """``config.eval``: held-out ``splits``; ``fit_steps`` of the held-out ``C_ill`` fit;
    ``validate_stride``: the validations during training (``train.eval_every``) render every
    stride-th frame of each held-out sequence (a 512² frame takes ~1 s on 2 CPU cores; the final
    evaluation renders them all)."""
    return ml_collections.ConfigDict(
        {"fit_steps": fit_steps, "batch_size": 8, "splits": splits, "validate_stride": 1}
    )


# --- the NeRF config ------------------------------------------------------------------------------


def nerf_config(
    data: ml_collections.ConfigDict, model: ml_collections.ConfigDict, evaluation, size: str
) -> ml_collections.ConfigDict:
    """The NeRF stage's config over a data block: loop, optimiser, model, losses, pre-trained
    stages (none by default) and evaluation; ``size`` sets the training budget of the ``smoke``
    and ``full`` variants (the data block's own variant settings are the caller's)."""
    config = base_config(seed=0, steps=2500, log_every=25, checkpoint_every=250, sample_every=500)
    config.optim.learning_rate = 2e-3
    config.optim.schedule = "cosine"
    config.optim.warmup_steps = 50
    config.optim.grad_clip_norm = 1.0
    # A grid field's tables learn at this multiple of the network's rate (instant-NGP, RAD-NeRF
    # and ER-NeRF: 10x); the frequency field has no tables (1: one group).
    config.optim.grid_lr_scale = 1.0 if model.encoding == "frequency" else 10.0
    config.data = data
    # CPU budget (benchmarks/RESULTS.md): one frame pair (2 frames x 32² rays x 32 samples) per
    # step keeps a step near half a second on 2 cores; use larger batches on accelerators.
    config.data.batch_size = 1
    config.model = model
    config.loss = loss_block()
    # Pre-trained stages (empty: none). sync: F_lip from the sync stage's frozen audio encoder
    # (standardised, through a learned projection to lip_dim) instead of the audio network;
    # disentangle: L_dis (weight loss.dis) against the extractor's reference codes, which also
    # initialise the codes. model.lip_dim=0 without a sync stage: no F_lip at all.
    config.sync = sync_block()
    config.disentangle = disentangle_block()
    config.eval = evaluation
    if size == "smoke":
        config.sync.train_config = "smoke"
        config.data.max_frames = 8
        config.data.resolution, config.data.lr_resolution = 64, 16
        config.data.batch_size = 2
        config.train.update(steps=6, log_every=2, checkpoint_every=3, sample_every=0)
    elif size == "full":
        config.data.resolution, config.data.lr_resolution = 512, 64
        config.data.batch_size = 8
        config.train.update(steps=200_000, checkpoint_every=2000, sample_every=5000)
        config.optim.learning_rate = 5e-4
    return config


def _variant(arg: str | None, field: str = "frequency", **extra) -> tuple:
    """``(size, field, *extra)`` of a variant string: ``smoke`` / ``full``, ``field=hash`` & co
    (default ``field``), and the caller's ``extra`` keys (with their defaults)."""
    variant = parse_arg(arg, smoke=False, full=False, field=field, **extra)
    if variant.smoke and variant.full:
        raise ValueError("choose one of the variants smoke and full")
    size = "smoke" if variant.smoke else "full" if variant.full else "cpu"
    return (size, str(variant.field), *(str(variant[k]) for k in extra))


def voca_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``configs/voca.py``: VOCASET-format data (the embedded synthetic set by default)."""
    size, field = _variant(arg)
    data = voca_frames_config()
    model = model_block(size, field)
    config = nerf_config(data, model, eval_block(30, ("val", "val_views")), size)
    if size == "cpu" and field != "frequency":
        # A grid matched to the 32 rays the 32² feature map casts across the head (8 levels,
        # 16 ... 128): the fine grid's held-out PSNR step for step, 1.7x less time per step on
        # the synthetic set (docs/fields.md).
        config.model.update(grid_levels=8, grid_max_resolution=128)
    if size == "smoke":
        config.data.synthetic.update({"identities": 2, "sequences": 2, "seconds": 1.0})
        config.data.supersample = 1
        config.eval.fit_steps = 2
    elif size == "full":
        config.data.synthetic.update({"identities": 8, "sequences": 8, "seconds": 6.0})
    config.lock()
    return config


def video_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``configs/video.py``: one preprocessed talking-head video.

    ``frame=full``: whole frames (head and torso from one field, ``model.space="head+camera"``)
    composited over the video's static background at 512² (a 128² feature map on the CPU size,
    64² for ``full``; smoke: 32² -> 128²), trained on patches of a quarter of the map's side
    (``data.patch``; ``full`` renders whole frames), the sampling sphere widened to the frame's
    corners at the head's depth; the hash-grid field unless ``field=`` says otherwise; on the
    CPU size with a grid field, 8 levels of resolution 16 ... 256, a grid of the blink's own and
    the blink frames (blink >= 0.5) 8 times per epoch, so that the blink input shuts the eyes, and
    six grids of the speech's own at half scale (``model.mouth_grids``, ``model.mouth_scale``),
    so that the mouth opens and shuts with it (docs/video.md)."""
    size, field, frame = _variant(arg, field="", frame="crop")
    if frame not in ("crop", "full"):
        raise ValueError(f"frame={frame!r}: use frame=crop (the head crop) or frame=full")
    # Whole frames default to the hash grid: on french.mp4 it passed the MLP's final held-out
    # PSNR within its first 500 steps (docs/fields.md); the head crop keeps NeRF's MLP.
    field = field or ("hash" if frame == "full" else "frequency")
    # One video is one identity and one sequence: C_ill would be a single constant vector (and
    # would have to be re-fitted on the held-out part), so it is dropped. The frames are scaled so
    # the crop's half side at the head is data.scene_radius (0.2): the bounding sphere holds what
    # the crop shows, with a margin for depth.
    model = model_block(
        size, field, codes={"id": 32, "ex": 16, "al": 32, "ill": 0}, bound_radius=0.22
    )
    # No C_ill to fit on the held-out part (fit_steps is unused); one held-out split.
    config = nerf_config(video_frames_config(), model, eval_block(0, ("val",)), size)
    if frame == "full":
        config.data.frame = "full"
        config.data.mask_parts = ("head", "neck", "torso")
        # The source's resolution (a 128² feature map -> 512²; smoke: 32² -> 128²), trained on
        # patches of the CPU size's usual map (32²: the same rays per step as the head crop),
        # 30 % of them on the mouth and 10 % on the eyes.
        resolution = 128 if size == "smoke" else 512
        side = resolution // int(config.model.upsample)
        config.data.update(resolution=resolution, lr_resolution=side)
        if size != "full":  # an accelerator renders whole frames
            config.data.update(patch=side // 4, patch_mouth=0.3, patch_eyes=0.1)
        if size == "cpu":
            # The avatar's CPU budget (<= 60 min of training): 6000 steps took 57.8 min on 2 CPU
            # cores on french.mp4 and gave 1.8 dB more on the face than 2500 (docs/video.md).
            config.train.steps = 6000
            if field in ("hash", "triplane"):
                # A coarser grid (8 levels, 16 ... 256: the finest level about twice the 128 rays
                # the feature map casts across the frame): the same held-out scores on french.mp4
                # in 40.2 instead of 57.8 min of training (docs/video.md); the tri-plane's planes
                # are coarsened alike (docs/fields.md compares the three fields on french.mp4).
                config.model.update(grid_levels=8, grid_max_resolution=256)
                # Blinks that show: a grid of the blink's own, and the frames whose eyes are at
                # least half closed 8 times per epoch. On french.mp4 (6000 steps) the blink input
                # shuts the rendered eyes (closure 0.69 vs the truth's 0.79, against 0.006
                # without), the other scores within 0.2 dB, in 45.3 instead of 40.2 min.
                config.model.grid_conditions = ("blink",)
                config.data.update(blink_min=0.5, blink_repeat=8)
                # A mouth that follows the speech: F_lip projected to 6 channels with grids of
                # their own, the channels at half scale (the summed grids' step of 3 at scale 1;
                # 6 at scale 1 went transparent once). On french.mp4 the renders' sync
                # confidence is 0.086 / 0.076 (two seeds; truth 0.113; 3 grids at scale 1:
                # 0.062-0.076 in three runs; none: 0.022), in 1.17x the step time of 3 grids
                # (docs/video.md).
                config.model.update(mouth_grids=6, mouth_scale=0.5)
        if field == "frequency":
            # NeRF's MLP over whole frames can stay transparent from its first steps (the
            # background shows through; its held-out PSNR stuck at 14.6 dB after 1500 steps on
            # french.mp4 in one order of the training frames, another order escapes): the
            # accumulation-vs-mask term at weight 1 makes it draw the person (docs/fields.md).
            config.loss.mask = 1.0
        # The frame's half side is data.scene_radius (0.2) at the head: its corners are 0.28 off.
        config.model.update(space="head+camera", bound_radius=0.3, render_size=(side, side))
    config.lock()
    return config
