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
import pickle
import zipfile
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxhead.audio.hubert import HubertConfig, HubertModel

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


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or does not match the architecture."""


# --------------------------------------------------------------------------------------------
# torch-free pytorch_model.bin reader
# --------------------------------------------------------------------------------------------

# torch storage class name -> NumPy dtype of its raw little-endian bytes. bfloat16 has no NumPy
# dtype: its bits are read as uint16 and widened to float32 after the tensor is rebuilt.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, array: np.ndarray, is_bfloat16: bool):
        self.array = array
        self.is_bfloat16 = is_bfloat16


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *unused):
    """NumPy twin of ``torch._utils._rebuild_tensor_v2``: a strided view copied out."""
    base = storage.array[storage_offset:]
    itemsize = base.dtype.itemsize
    if (
        len(size)
        and min(size) > 0
        and base.shape[0] < 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    ):
        raise pickle.UnpicklingError("tensor extends past the end of its storage (corrupt file)")
    array = np.lib.stride_tricks.as_strided(
        base, shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()
    if storage.is_bfloat16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch state dict into NumPy arrays; any other global is refused."""

    def __init__(self, file, zip_file: zipfile.ZipFile, data_prefix: str):
        super().__init__(file)
        self._zip = zip_file
        self._data_prefix = data_prefix
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a weights file should hold only tensors"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
        if key not in self._storages:
            raw = self._zip.read(f"{self._data_prefix}{key}")
            array = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
            self._storages[key] = _Storage(
                array.astype(storage_type.dtype), storage_type.name == "BFloat16Storage"
            )
        return self._storages[key]


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a ``torch.save``d state dict (zip format, torch >= 1.6) as NumPy arrays, no torch."""
    path = pathlib.Path(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a zip-format torch file (the legacy pre-1.6 format, or corrupt); "
            "re-save it with a recent torch or as model.safetensors"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {pickles}")
        root = pickles[0][: -len("data.pkl")]
        byteorder = f"{root}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(f"{path}: big-endian torch files are not supported")
        with archive.open(pickles[0]) as pkl:
            try:
                state = _RestrictedUnpickler(pkl, archive, f"{root}data/").load()
            except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as err:
                raise CheckpointError(f"{path}: cannot read the state dict ({err})") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return dict(state)


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
