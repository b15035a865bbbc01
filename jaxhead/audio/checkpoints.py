"""Loading Hugging Face HuBERT checkpoint folders into ``jaxhead.audio.hubert.HubertModel``.

A checkpoint folder is what ``save_pretrained`` writes, e.g. for facebook/hubert-large-ls960-ft::

    from transformers import HubertModel          # or HubertForCTC
    HubertModel.from_pretrained("facebook/hubert-large-ls960-ft").save_pretrained("DIR")

i.e. ``config.json`` plus ``model.safetensors`` (read with safetensors' NumPy API) or
``pytorch_model.bin`` (read here WITHOUT torch: it is a zip archive holding a pickle whose
tensors point at raw little-endian storages; a restricted unpickler rebuilds them as NumPy
arrays and refuses any other global). Keys may carry the ``hubert.`` prefix of ``HubertForCTC``;
heads (``lm_head``, ``masked_spec_embed``, ...) are ignored. The weight-normalised positional
convolution is stored either as ``weight_g``/``weight_v`` (old ``nn.utils.weight_norm``) or as
``parametrizations.weight.original0/1`` (new parametrisation API); both are folded into one kernel
``g * v / ||v||`` (norm over all axes but the kernel axis, torch ``dim=2``).
"""

from __future__ import annotations

import json
import os
import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.audio.hubert import HubertConfig, HubertModel
from jaxhead.pretrained.weights import CheckpointError, read_torch_state_dict

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"
PREPROCESSOR_FILE = "preprocessor_config.json"

HOW_TO_GET = (
    "put a Hugging Face HuBERT checkpoint folder there (config.json + model.safetensors or "
    "pytorch_model.bin), e.g. written on a machine with network access by\n"
    '  python -c "from transformers import HubertModel; HubertModel.from_pretrained('
    "'facebook/hubert-large-ls960-ft').save_pretrained('DIR')\""
)

_MODEL_PREFIXES = ("feature_extractor.", "feature_projection.", "encoder.")
_POS_CONV = "encoder.pos_conv_embed.conv."


def read_state_dict(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The raw Hugging Face state dict of a checkpoint folder (safetensors preferred)."""
    folder = pathlib.Path(folder)
    if (folder / SAFETENSORS_FILE).is_file():
        from safetensors.numpy import load_file

        try:
            return dict(load_file(folder / SAFETENSORS_FILE))
        except Exception as err:  # safetensors raises its own SafetensorError and TypeErrors
            raise CheckpointError(f"{folder / SAFETENSORS_FILE}: cannot read ({err})") from err
    if (folder / TORCH_FILE).is_file():
        return read_torch_state_dict(folder / TORCH_FILE)
    raise CheckpointError(
        f"{folder} holds neither {SAFETENSORS_FILE} nor {TORCH_FILE}; {HOW_TO_GET}"
    )


# --------------------------------------------------------------------------------------------
# HF state dict -> NNX parameters
# --------------------------------------------------------------------------------------------


def _fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``g * v / ||v||`` with the norm over every axis except the kernel axis (torch ``dim=2``)."""
    norm = np.sqrt(np.sum(np.square(v.astype(np.float64)), axis=(0, 1), keepdims=True))
    return (g.astype(np.float64) * v / norm).astype(np.float32)


def normalize_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strips ``hubert.``, drops heads, folds weight norm: keys as in a plain ``HubertModel``."""
    params = {}
    for key, value in state_dict.items():
        key = key.removeprefix("hubert.")
        if key.startswith(_MODEL_PREFIXES):
            params[key] = np.asarray(value)
    pairs = (
        ("weight_g", "weight_v"),
        ("parametrizations.weight.original0", "parametrizations.weight.original1"),
    )
    for g_name, v_name in pairs:
        g_key, v_key = _POS_CONV + g_name, _POS_CONV + v_name
        if g_key in params and v_key in params:
            params[_POS_CONV + "weight"] = _fold_weight_norm(params.pop(g_key), params.pop(v_key))
    return params


def _hf_key(path: tuple) -> str:
    """NNX parameter path -> Hugging Face key: ``kernel``/``scale`` are torch's ``weight``."""
    *module, leaf = (str(p) for p in path)
    leaf = {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)
    return ".".join([*module, leaf])


def _to_flax(value: np.ndarray) -> np.ndarray:
    """torch -> Flax layout: Linear [out, in] -> [in, out]; Conv1d [out, in, k] -> [k, in, out]."""
    if value.ndim == 2:
        value = value.T
    elif value.ndim == 3:
        value = value.transpose(2, 1, 0)
    return value


def hubert_from_state_dict(
    config: HubertConfig, state_dict: dict[str, np.ndarray], source: str = "state dict"
) -> HubertModel:
    """Builds a ``HubertModel`` holding the given Hugging Face weights (no random init)."""
    params = normalize_state_dict(state_dict)
    abstract = nnx.eval_shape(lambda: HubertModel(config, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    flat = nnx.to_flat_state(abstract_state)
    wanted = {_hf_key(path): (path, variable) for path, variable in flat}
    missing = sorted(set(wanted) - set(params))
    unexpected = sorted(set(params) - set(wanted))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the HuBERT architecture of its config.json: "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}; "
            f"{HOW_TO_GET}"
        )
    loaded = []
    for key, (path, variable) in wanted.items():
        value = _to_flax(params[key])
        if tuple(value.shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{source}: {key} has shape {params[key].shape}, the config implies "
                f"{variable.shape} (in Flax layout); is config.json the one saved with the weights?"
            )
        loaded.append((path, variable.replace(jnp.asarray(value, jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def load_hubert(folder: str | os.PathLike) -> HubertModel:
    """Loads a Hugging Face HuBERT checkpoint folder (``HubertModel`` or ``HubertForCTC``)."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"HuBERT checkpoint folder {folder} does not exist; {HOW_TO_GET}")
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}; {HOW_TO_GET}")
    raw_config = json.loads((folder / CONFIG_FILE).read_text())
    model_type = raw_config.get("model_type", "hubert")
    if model_type != "hubert":
        raise CheckpointError(
            f"{folder / CONFIG_FILE} has model_type={model_type!r}, expected 'hubert'; {HOW_TO_GET}"
        )
    config = HubertConfig.from_hf_dict(raw_config)
    return hubert_from_state_dict(config, read_state_dict(folder), source=str(folder))


def input_normalization(folder: str | os.PathLike) -> bool:
    """Whether the checkpoint expects zero-mean unit-variance input (``do_normalize``).

    Read from ``preprocessor_config.json`` when the folder has one; otherwise fairseq's rule:
    models with a layer-normed conv stack (hubert-large) were trained on normalised audio, the
    group-normed base models on raw audio.
    """
    folder = pathlib.Path(folder)
    preprocessor = folder / PREPROCESSOR_FILE
    if preprocessor.is_file():
        return bool(json.loads(preprocessor.read_text()).get("do_normalize", True))
    config = json.loads((folder / CONFIG_FILE).read_text())
    return config.get("feat_extract_norm", "group") == "layer"
