"""Reading published weight files and checking them against a Flax port (shared by all loaders).

* :func:`read_torch_state_dict`: a ``torch.save``d state dict (zip format) as NumPy arrays,
  without torch and without executing pickled code;
* :func:`read_weights_file`: ``.pth`` / ``.pt`` / ``.bin``, ``.safetensors`` or ``.npz``;
* :func:`state_dict_problems`: missing / unexpected / mis-shaped keys, for one error message.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np


def _natural(key: str) -> tuple:
    """Sort ``features.10`` after ``features.2``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def state_dict_problems(
    state: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    unexpected_hint: str = "",
) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state`` against ``expected`` shapes.

    Returns one phrase per kind of problem (empty when the state dict fits), for a loader to join
    into its single error message.
    """
    problems = []
    if missing := sorted(set(expected) - set(state), key=_natural):
        problems.append(f"missing keys {missing}")
    if unexpected := sorted(set(state) - set(expected), key=_natural):
        problems.append(f"unexpected keys {unexpected}{unexpected_hint}")
    wrong = [
        f"{key} {tuple(np.shape(state[key]))} (expected {tuple(shape)})"
        for key, shape in expected.items()
        if key in state and tuple(np.shape(state[key])) != tuple(shape)
    ]
    if wrong:
        problems.append("mis-shaped " + ", ".join(wrong))
    return problems


class CheckpointError(ValueError):
    """A weights file or checkpoint folder that is missing, unreadable or does not match the
    architecture."""


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


def read_weights_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Raw arrays of a ``.pth`` / ``.pt`` / ``.bin`` (torch zip), ``.safetensors`` or ``.npz``
    file; raises :class:`CheckpointError` naming the file and the problem."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".pth", ".pt", ".bin"):
            return read_torch_state_dict(path)
        if suffix == ".safetensors":
            from safetensors.numpy import load_file

            return dict(load_file(path))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    except CheckpointError:
        raise
    except Exception as err:  # safetensors / zipfile raise their own error types
        raise CheckpointError(f"{path}: cannot read the weights ({err})") from err
    raise CheckpointError(
        f"{path}: unknown weights format {suffix!r}; use .pth, .safetensors, .npz"
    )
