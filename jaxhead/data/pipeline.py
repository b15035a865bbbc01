"""The input pipeline every data source feeds: frame sources -> shuffled, paired, batched numpy.

Two pieces:

* the **frame-source contract** (`FrameSource`, `FRAME_SPEC`): what a data source (the video
  dataset reader, the VOCASET renderer, an in-memory array set) must provide. A source is a
  random-access sequence of frames; each frame is a dict of numpy arrays laid out as `FRAME_SPEC`
  says; `next_index(i)` names the following frame of the same sequence (or None at its end), which
  is all the pipeline needs to build the consecutive-frame pairs of the velocity loss (paper 000,
  eq. 7).
* `make_pipeline`: a grain pipeline over a source,
  ``MapDataset(indices) -> shard per process -> shuffle(seed) -> repeat -> map(load) ->
  to_iter_dataset(threads, prefetch) -> batch``, returned as a `FramePipeline` iterator whose
  state is a JSON-serialisable dict (`get_state` / `set_state`) saved with each checkpoint, so a
  resumed run sees the same data order.

Host batches are numpy; device placement is the training plumbing's job
(`jaxhead.train.sharding.shard_batch(batch, mesh)` shards the leading batch axis over the mesh's
data axis).

Multi-host: every process runs its own pipeline over a disjoint shard of the item stream (grain
`ShardOptions`, by default `ShardByJaxProcess`: shard index = `jax.process_index()`), and yields
`batch_size // process_count` examples per step - its process-local part of the global batch,
which `shard_batch` assembles with `jax.make_array_from_process_local_data`. Shards are cut to
equal length so that every process yields the same number of batches.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import grain
import numpy as np

from jaxhead.data.errors import DatasetError

__all__ = [
    "FRAME_SPEC",
    "FramePipeline",
    "FrameSource",
    "InMemoryFrameSource",
    "make_pipeline",
    "pair_indices",
    "validate_example",
]

# One frame's example. Shapes use names for sizes that vary between datasets; a name must take the
# same value for every key of one example (e.g. `mask` is as large as `image`).
#   image       target RGB at full resolution, in [0, 1]
#   image_lr    the same image at the low resolution the NeRF renders its feature map at
#   mask        foreground (head) mask at full resolution, in [0, 1]
#   mask_lr     the same at low resolution
#   intrinsics  (fx, fy, cx, cy) in pixels of the full-resolution image
#   c2w         camera-to-world 4x4 (OpenGL convention: camera looks along -z, as NeRF datasets)
#   audio       audio-feature window centred on the frame: `window` frames x `feature` channels
#   landmarks   2D landmarks in pixels of the full-resolution image (x, y)
#   expression  per-frame expression signal (blendshapes, or zeros of this size when absent)
#   blink       eye-closure amount in [0, 1] (0 open, 1 closed)
#   identity, sequence, frame   integer ids: who, which clip, which frame of the clip
FRAME_SPEC: dict[str, tuple[tuple[int | str, ...], np.dtype]] = {
    "image": (("height", "width", 3), np.dtype(np.float32)),
    "image_lr": (("height_lr", "width_lr", 3), np.dtype(np.float32)),
    "mask": (("height", "width", 1), np.dtype(np.float32)),
    "mask_lr": (("height_lr", "width_lr", 1), np.dtype(np.float32)),
    "intrinsics": ((4,), np.dtype(np.float32)),
    "c2w": ((4, 4), np.dtype(np.float32)),
    "audio": (("window", "feature"), np.dtype(np.float32)),
    "landmarks": (("landmarks", 2), np.dtype(np.float32)),
    "expression": (("expression",), np.dtype(np.float32)),
    "blink": ((), np.dtype(np.float32)),
    "identity": ((), np.dtype(np.int32)),
    "sequence": ((), np.dtype(np.int32)),
    "frame": ((), np.dtype(np.int32)),
}


@runtime_checkable
class FrameSource(Protocol):
    """Random access to the frames of a dataset (see `FRAME_SPEC` for one frame's layout)."""

    def __len__(self) -> int:
        """Number of frames."""
        ...

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        """The example of frame `i` (0 <= i < len), laid out as `FRAME_SPEC`."""
        ...

    def next_index(self, i: int) -> int | None:
        """The index of the frame after `i` in the same sequence, or None if `i` ends it."""
        ...


def validate_example(example: Mapping[str, Any], where: str = "frame") -> dict[str, int]:
    """Checks one example against `FRAME_SPEC`; returns the value of each named size.

    Extra keys are allowed (a source may carry more). Raises `DatasetError` naming the key and the
    offending shape or dtype.
    """
    sizes: dict[str, int] = {}
    missing = [key for key in FRAME_SPEC if key not in example]
    if missing:
        raise DatasetError(None, f"{where} lacks keys {missing}.", "see FRAME_SPEC in pipeline.py.")
    for key, (shape, dtype) in FRAME_SPEC.items():
        value = example[key]
        if not isinstance(value, np.ndarray):
            raise DatasetError(None, f"{where}[{key!r}] is a {type(value).__name__}, not numpy.")
        if value.dtype != dtype or value.ndim != len(shape):
            raise DatasetError(
                None,
                f"{where}[{key!r}] is {value.dtype}{list(value.shape)}, "
                f"expected {dtype}{list(shape)}.",
            )
        for axis, (want, got) in enumerate(zip(shape, value.shape, strict=True)):
            want = sizes.setdefault(want, got) if isinstance(want, str) else want
            if got != want:
                raise DatasetError(
                    None,
                    f"{where}[{key!r}] has size {got} on axis {axis}, expected {want} "
                    f"(shape {list(value.shape)} vs spec {list(shape)}).",
                )
    return sizes


class InMemoryFrameSource:
    """A `FrameSource` over stacked arrays already in memory (rendered caches, tests, benchmarks).

    Args:
      arrays: key -> array whose leading axis indexes frames; must hold every `FRAME_SPEC` key.
        The frames of one (identity, sequence) must be stored consecutively, in time order: the
        frame after row i is row i + 1 when both belong to the same identity and sequence.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]):
        lengths = {key: len(value) for key, value in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise DatasetError(None, f"in-memory arrays disagree on the frame count: {lengths}.")
        self.arrays = dict(arrays)
        self._length = next(iter(lengths.values()))
        if self._length:
            validate_example(self[0], where="in-memory frame 0")
        ids = np.stack([self.arrays["identity"], self.arrays["sequence"]], axis=-1)
        self._continues = np.all(ids[1:] == ids[:-1], axis=-1)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        # np.asarray: indexing a 1-D array gives a numpy scalar, the spec wants 0-d arrays.
        return {key: np.asarray(value[i]) for key, value in self.arrays.items()}

    def next_index(self, i: int) -> int | None:
        return i + 1 if i + 1 < self._length and self._continues[i] else None


def pair_indices(source: FrameSource) -> np.ndarray:
    """[P, 2] int64 (frame j-1, frame j) index pairs of consecutive frames of one sequence."""
    pairs = []
    for i in range(len(source)):
        j = source.next_index(i)
        if j is not None:
            pairs.append((i, j))
    return np.asarray(pairs, np.int64).reshape(-1, 2)


class _LoadExample(grain.transforms.Map):
    """Item (a frame index, or a pair of them) -> tuple of its frames (see `_stack_batch`)."""

    def __init__(self, source: FrameSource, pairs: bool, validate: bool):
        self.source = source
        self.pairs = pairs
        self.validate = validate

    def _frame(self, i: int) -> dict[str, np.ndarray]:
        example = self.source[i]
        if self.validate:
            validate_example(example, where=f"frame {i}")
        return example

    def map(self, element) -> tuple[dict[str, np.ndarray], ...]:
        if not self.pairs:
            return (self._frame(int(element)),)
        first, second = (self._frame(int(i)) for i in element)
        for key in ("identity", "sequence"):
            if first[key] != second[key]:
                raise DatasetError(
                    None,
                    f"next_index paired frames {[int(i) for i in element]} across {key}s "
                    f"{int(first[key])} and {int(second[key])}.",
                    "next_index must stay inside one sequence.",
                )
        return first, second


def _stack_batch(examples: list[tuple[dict[str, np.ndarray], ...]], pairs: bool):
    """Stacks examples into [B, 2, ...] (pairs) or [B, ...] arrays with ONE copy per frame.

    Frames arrive unstacked so that full-resolution images are copied once, straight into the
    batch, rather than once into a pair and again into the batch.
    """
    batch = {}
    for key in examples[0][0]:
        first = examples[0][0][key]
        leading = (len(examples), 2) if pairs else (len(examples),)
        out = np.empty(leading + first.shape, first.dtype)
        for b, frames in enumerate(examples):
            for t, frame in enumerate(frames):
                value = frame[key]
                if value.shape != first.shape:
                    raise DatasetError(
                        None,
                        f"frames of one batch disagree on {key!r}: {list(value.shape)} vs "
                        f"{list(first.shape)}.",
                        "make every frame of a source the same size (e.g. one image_size).",
                    )
                out[(b, t) if pairs else b] = value
        batch[key] = out
    return batch


@dataclasses.dataclass(frozen=True)
class _Fingerprint:
    """What must match for an iterator state to resume a pipeline."""

    num_items: int
    batch_size: int
    seed: int
    shuffle: bool
    pairs: bool
    num_epochs: int | None
    shard_index: int
    shard_count: int


class FramePipeline:
    """Iterator over host batches (dicts of numpy, leading axis = this process's batch).

    `get_state()` is a JSON-serialisable dict; `set_state(state)` on a pipeline built with the same
    arguments continues exactly where the saved one stopped.
    """

    def __init__(self, dataset: grain.IterDataset, fingerprint: _Fingerprint, steps_per_epoch: int):
        self._iterator = iter(dataset)
        self.fingerprint = fingerprint
        self.steps_per_epoch = steps_per_epoch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._iterator)

    def get_state(self) -> dict[str, Any]:
        state = {"grain": self._iterator.get_state(), **dataclasses.asdict(self.fingerprint)}
        json.dumps(state)  # Fail here, not at checkpoint time, if grain's state ever stops being
        return state  # plain JSON.

    def set_state(self, state: Mapping[str, Any]) -> None:
        expected = dataclasses.asdict(self.fingerprint)
        saved = {key: state.get(key) for key in expected}
        if saved != expected:
            diff = {k: (saved[k], expected[k]) for k in expected if saved[k] != expected[k]}
            raise ValueError(
                f"cannot resume the input pipeline: the saved state comes from a different "
                f"pipeline ((saved, now) = {diff}). Resume with the data and batch settings of "
                "the saved run, or start a new workdir."
            )
        self._iterator.set_state(state["grain"])


def make_pipeline(
    source: FrameSource,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    pairs: bool = True,
    num_epochs: int | None = None,
    prefetch: int | None = None,
    num_threads: int = 4,
    data_axis_size: int = 1,
    shard: grain.sharding.ShardOptions | None = None,
    validate: bool = True,
    repeats: np.ndarray | None = None,
) -> FramePipeline:
    """A deterministic, resumable, prefetching grain pipeline of batches over `source`.

    Args:
      source: the frames (see `FrameSource`).
      batch_size: the GLOBAL batch size (all processes together); every process yields
        `batch_size // shard.shard_count` examples per batch.
      seed: shuffle seed in [0, 2**32); a seed fixes the order of every epoch.
      shuffle: shuffle the items (each epoch differently); False keeps source order.
      pairs: each example is (frame j-1, frame j) of one sequence stacked on axis 0, so batch
        arrays are [B, 2, ...] (velocity loss, paper 000 eq. 7); False: single frames, [B, ...].
      num_epochs: passes over the data; None repeats forever.
      prefetch: examples read ahead (grain's per-process prefetch buffer); default: two
        batches. Each example holds its full-resolution images, so this bounds host memory.
      num_threads: threads reading examples in parallel (grain ReadOptions); 0 reads inline.
      data_axis_size: size of the mesh's data axis the batch is sharded over; `batch_size`
        must be divisible by it.
      shard: which part of the item stream this process reads (grain ShardOptions); default
        `grain.sharding.ShardByJaxProcess(drop_remainder=True)`.
      validate: check every frame against `FRAME_SPEC` (microseconds per frame).
      repeats: how many times each item (pair, or frame without `pairs`) comes per epoch,
        `[items]` ints >= 1 (oversampling rare frames, e.g. blinks); None: once each.

    Returns:
      A `FramePipeline`. Incomplete final batches are dropped so shapes never change (one
      compilation of the train step).
    """
    if shard is None:
        shard = grain.sharding.ShardByJaxProcess(drop_remainder=True)
    if batch_size <= 0 or batch_size % data_axis_size:
        raise ValueError(
            f"batch_size {batch_size} is not a positive multiple of the mesh's data-axis size "
            f"{data_axis_size}; set the batch size to a multiple of {data_axis_size}."
        )
    if batch_size % shard.shard_count:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {shard.shard_count} processes; "
            f"set it to a multiple of {shard.shard_count}."
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed {seed} must lie in [0, 2**32).")
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive or None (forever), got {num_epochs}.")
    local_batch_size = batch_size // shard.shard_count

    items = pair_indices(source) if pairs else np.arange(len(source), dtype=np.int64)
    if repeats is not None:
        repeats = np.asarray(repeats)
        if repeats.shape != (len(items),) or (repeats < 1).any():
            raise ValueError(
                f"repeats must give every one of the {len(items)} items a count >= 1; got shape "
                f"{repeats.shape}, minimum {repeats.min() if repeats.size else None}"
            )
        items = np.repeat(items, repeats.astype(np.int64), axis=0)
    # Strided shards spread every process over all sequences; cutting them to equal length keeps
    # the processes in lock-step (each yields the same number of batches).
    per_shard = len(items) // shard.shard_count
    items = items[shard.shard_index :: shard.shard_count][:per_shard]
    steps_per_epoch = per_shard // local_batch_size
    if steps_per_epoch == 0:
        kind = "consecutive-frame pairs" if pairs else "frames"
        raise DatasetError(
            None,
            f"the source has {len(items)} {kind} for this process, fewer than one batch of "
            f"{local_batch_size}.",
            "use a smaller batch size or more frames.",
        )

    dataset = grain.MapDataset.source(list(items))
    if shuffle:
        dataset = dataset.shuffle(seed=seed)
    if num_epochs != 1:
        # Shuffle before repeat: each epoch is a fresh permutation and epochs never mix.
        dataset = dataset.repeat(num_epochs)
    dataset = dataset.map(_LoadExample(source, pairs=pairs, validate=validate))
    if prefetch is None:
        prefetch = 2 * local_batch_size
    read_options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    iter_dataset = dataset.to_iter_dataset(read_options).batch(
        local_batch_size,
        drop_remainder=True,
        batch_fn=functools.partial(_stack_batch, pairs=pairs),
    )
    fingerprint = _Fingerprint(
        num_items=len(items),
        batch_size=batch_size,
        seed=seed,
        shuffle=shuffle,
        pairs=pairs,
        num_epochs=num_epochs,
        shard_index=shard.shard_index,
        shard_count=shard.shard_count,
    )
    return FramePipeline(iter_dataset, fingerprint, steps_per_epoch)
