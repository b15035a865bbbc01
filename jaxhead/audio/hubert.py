"""HuBERT speech encoder in Flax NNX, layer for layer the architecture of ``transformers``'
``HubertModel`` so that Hugging Face checkpoints load unchanged (see ``checkpoints.py``).

Structure (paper: Hsu et al. 2021, HuBERT; the same backbone as wav2vec 2.0):

1. feature encoder: 7 strided 1-D convolutions (512 channels, total stride 320 = 20 ms at
   16 kHz, receptive field 400 samples) with GELU; the *base* layout
   (``feat_extract_norm="group"``) has a per-channel GroupNorm after the first convolution only,
   the *large* layout (``"layer"``) a LayerNorm over channels after every convolution;
2. feature projection: LayerNorm + Linear to ``hidden_size``;
3. convolutional positional embedding: one grouped convolution (kernel 128, 16 groups) whose
   weight-normalised kernel is folded into a plain kernel when loading, GELU, added to the input;
4. transformer encoder: post-LN layers (``do_stable_layer_norm=False``, hubert-base) with a
   LayerNorm before the first layer, or pre-LN layers (``do_stable_layer_norm=True``,
   hubert-large / facebook/hubert-large-ls960-ft) with a LayerNorm after the last layer.

Modules hold parameters and the forward pass only; inference is deterministic (no dropout,
LayerDrop or SpecAugment masking: this encoder is a frozen feature extractor here). Inputs are
unpadded batches of raw 16 kHz audio (no attention mask).

Hidden states follow ``transformers`` 5 with ``output_hidden_states=True``: ``num_hidden_layers
+ 1`` entries, the input of the first layer and the output of every layer. In the pre-LN layout
the last entry is the output of the last layer *before* the final LayerNorm, while
``last_hidden_state`` is after it (transformers 4 put the normalised state last instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

# Conv front end: output step t sees samples [320 t, 320 t + 400) (kernel 10/stride 5, then
# six kernel-3-or-2/stride-2 layers); the peers' frame-count formula uses the same numbers.
SAMPLES_PER_STEP = 320
RECEPTIVE_FIELD = 400


@dataclasses.dataclass(frozen=True)
class HubertConfig:
    """The architecture fields of a Hugging Face ``HubertConfig`` (config.json).

    Defaults are facebook/hubert-base-ls960's. ``from_hf_dict`` keeps only the fields that change
    the forward pass; training-only fields (dropouts, masking, CTC) are ignored.
    """

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    feat_proj_layer_norm: bool = True
    conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False

    def __post_init__(self):
        if not len(self.conv_dim) == len(self.conv_stride) == len(self.conv_kernel):
            raise ValueError(
                "conv_dim, conv_stride and conv_kernel must have the same length, got "
                f"{self.conv_dim}, {self.conv_stride}, {self.conv_kernel}"
            )
        if self.feat_extract_norm not in ("group", "layer"):
            raise ValueError(
                f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by "
                f"{self.num_attention_heads} attention heads"
            )
        for name in ("hidden_act", "feat_extract_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is not one of {sorted(ACTIVATIONS)}"
                )

    @classmethod
    def from_hf_dict(cls, config: dict[str, Any]) -> HubertConfig:
        """Builds the config from a parsed Hugging Face config.json."""
        if config.get("conv_pos_batch_norm", False):
            raise ValueError(
                "config.json sets conv_pos_batch_norm=True (a wav2vec2-style batch-normed "
                "positional convolution); jaxhead's HuBERT supports only HuBERT's weight-normed one"
            )
        if config.get("adapter_attn_dim") is not None:
            raise ValueError(
                "config.json sets adapter_attn_dim; attention adapters are not supported"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in config.items() if k in names}
        for key in ("conv_dim", "conv_stride", "conv_kernel"):
            if key in kwargs:
                kwargs[key] = tuple(int(x) for x in kwargs[key])
        return cls(**kwargs)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> HubertConfig:
        path = pathlib.Path(path)
        try:
            return cls.from_hf_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err})") from err

    def num_output_steps(self, num_samples: int) -> int:
        """Length of the feature sequence for ``num_samples`` input samples (conv output length)."""
        length = num_samples
        for kernel, stride in zip(self.conv_kernel, self.conv_stride, strict=True):
            length = (length - kernel) // stride + 1
        return max(length, 0)


ACTIVATIONS = {
    # Hugging Face "gelu" is the exact (erf) GELU; "gelu_new"/"gelu_pytorch_tanh" the tanh one.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "swish": jax.nn.silu,
    "silu": jax.nn.silu,
}


class ConvLayer(nnx.Module):
    """Conv1d (+ optional GroupNorm / LayerNorm) + activation, on ``[batch, time, channels]``."""

    def __init__(self, config: HubertConfig, layer_id: int, norm: str | None, *, rngs: nnx.Rngs):
        in_dim = config.conv_dim[layer_id - 1] if layer_id > 0 else 1
        out_dim = config.conv_dim[layer_id]
        self.conv = nnx.Conv(
            in_dim,
            out_dim,
            kernel_size=(config.conv_kernel[layer_id],),
            strides=(config.conv_stride[layer_id],),
            padding="VALID",
            use_bias=config.conv_bias,
            rngs=rngs,
        )
        self.norm = norm
        if norm == "group":
            # num_groups == channels: each channel is normalised over time (torch GroupNorm).
            self.layer_norm = nnx.GroupNorm(out_dim, num_groups=out_dim, epsilon=1e-5, rngs=rngs)
        elif norm == "layer":
            self.layer_norm = nnx.LayerNorm(out_dim, epsilon=1e-5, rngs=rngs)
        self.activation = config.feat_extract_activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        if self.norm is not None:
            x = self.layer_norm(x)
        return ACTIVATIONS[self.activation](x)


class FeatureEncoder(nnx.Module):
    """Raw audio ``[batch, samples]`` -> conv features ``[batch, steps, conv_dim[-1]]``."""

    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        layers = []
        for i in range(len(config.conv_dim)):
            if config.feat_extract_norm == "group":
                norm = "group" if i == 0 else None
            else:
                norm = "layer"
            layers.append(ConvLayer(config, i, norm, rngs=rngs))
        self.conv_layers = nnx.List(layers)

    def __call__(self, audio: jax.Array) -> jax.Array:
        x = audio[:, :, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nnx.Module):
    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        self.use_layer_norm = config.feat_proj_layer_norm
        if self.use_layer_norm:
            self.layer_norm = nnx.LayerNorm(
                config.conv_dim[-1], epsilon=config.layer_norm_eps, rngs=rngs
            )
        self.projection = nnx.Linear(config.conv_dim[-1], config.hidden_size, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_layer_norm:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConvEmbedding(nnx.Module):
    """Grouped 'same' convolution over time; HF's weight norm is folded into ``conv.kernel``."""

    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        kernel = config.num_conv_pos_embeddings
        self.conv = nnx.Conv(
            config.hidden_size,
            config.hidden_size,
            kernel_size=(kernel,),
            # torch pads kernel // 2 on both sides and, for an even kernel, drops the last step.
            padding=[(kernel // 2, kernel // 2 - (1 if kernel % 2 == 0 else 0))],
            feature_group_count=config.num_conv_pos_embedding_groups,
            rngs=rngs,
        )
        self.activation = config.feat_extract_activation

    def __call__(self, x: jax.Array) -> jax.Array:
        return ACTIVATIONS[self.activation](self.conv(x))


class Attention(nnx.Module):
    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.q_proj = nnx.Linear(dim, dim, rngs=rngs)
        self.k_proj = nnx.Linear(dim, dim, rngs=rngs)
        self.v_proj = nnx.Linear(dim, dim, rngs=rngs)
        self.out_proj = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, steps, dim = x.shape
        head_dim = dim // self.num_heads
        split = lambda t: t.reshape(batch, steps, self.num_heads, head_dim)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (head_dim**-0.5)
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, steps, dim)
        return self.out_proj(out)


class FeedForward(nnx.Module):
    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        self.intermediate_dense = nnx.Linear(
            config.hidden_size, config.intermediate_size, rngs=rngs
        )
        self.output_dense = nnx.Linear(config.intermediate_size, config.hidden_size, rngs=rngs)
        self.activation = config.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.output_dense(ACTIVATIONS[self.activation](self.intermediate_dense(x)))


class EncoderLayer(nnx.Module):
    """Transformer layer; ``pre_norm`` selects HF's stable-layer-norm (pre-LN) variant."""

    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        self.pre_norm = config.do_stable_layer_norm
        self.attention = Attention(config, rngs=rngs)
        eps = config.layer_norm_eps
        self.layer_norm = nnx.LayerNorm(config.hidden_size, epsilon=eps, rngs=rngs)
        self.feed_forward = FeedForward(config, rngs=rngs)
        self.final_layer_norm = nnx.LayerNorm(config.hidden_size, epsilon=eps, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.pre_norm:
            x = x + self.attention(self.layer_norm(x))
            return x + self.feed_forward(self.final_layer_norm(x))
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nnx.Module):
    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        self.pre_norm = config.do_stable_layer_norm
        self.pos_conv_embed = PositionalConvEmbedding(config, rngs=rngs)
        self.layer_norm = nnx.LayerNorm(
            config.hidden_size, epsilon=config.layer_norm_eps, rngs=rngs
        )
        self.layers = nnx.List(
            [EncoderLayer(config, rngs=rngs) for _ in range(config.num_hidden_layers)]
        )

    def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        x = x + self.pos_conv_embed(x)
        if not self.pre_norm:
            x = self.layer_norm(x)
        hidden_states = [x]
        for layer in self.layers:
            x = layer(x)
            hidden_states.append(x)
        if self.pre_norm:
            x = self.layer_norm(x)
        return x, tuple(hidden_states)


class HubertModel(nnx.Module):
    """The HuBERT encoder (``transformers.HubertModel``'s parameter tree and forward pass).

    Attribute names mirror the Hugging Face module names, so a checkpoint key such as
    ``encoder.layers.3.attention.q_proj.weight`` maps to ``model.encoder.layers[3].attention
    .q_proj.kernel`` (transposed).
    """

    def __init__(self, config: HubertConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.feature_extractor = FeatureEncoder(config, rngs=rngs)
        self.feature_projection = FeatureProjection(config, rngs=rngs)
        self.encoder = Encoder(config, rngs=rngs)

    def __call__(self, audio: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        """Encodes raw audio.

        Args:
          audio: ``[batch, num_samples]`` float32 16 kHz audio (already normalised to zero mean,
            unit variance if the checkpoint's feature extractor has ``do_normalize``), at least
            ``RECEPTIVE_FIELD`` samples long for the default conv stack.

        Returns:
          ``(last_hidden_state, hidden_states)``: ``[batch, steps, hidden_size]`` with
          ``steps = config.num_output_steps(num_samples)`` (= ``(num_samples - 80) // 320`` for
          the standard stack, 50 Hz), and a tuple of ``num_hidden_layers + 1`` arrays of the same
          shape (see the module docstring for their order).
        """
        if audio.ndim != 2:
            raise ValueError(f"HuBERT expects audio [batch, num_samples], got shape {audio.shape}")
        if self.config.num_output_steps(audio.shape[1]) < 1:
            raise ValueError(
                f"{audio.shape[1]} samples are too few for HuBERT's conv stack "
                f"(need at least {RECEPTIVE_FIELD} at 16 kHz)"
            )
        features = self.feature_extractor(audio)
        hidden = self.feature_projection(features)
        return self.encoder(hidden)
