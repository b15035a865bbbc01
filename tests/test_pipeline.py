"""Tests of the frame-source contract and the grain input pipeline (jaxhead.data.pipeline)."""

import json

import grain
import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

from jaxhead.data.errors import DatasetError
from jaxhead.data.pipeline import (
    FRAME_SPEC,
    FrameSource,
    InMemoryFrameSource,
    make_pipeline,
    pair_indices,
    validate_example,
)


def make_arrays(sequence_lengths, height=8, width=6, seed=0):
    """Stacked frames of several sequences; every array's values identify its frame."""
    rng = np.random.default_rng(seed)
    sequence = np.concatenate([np.full(n, s) for s, n in enumerate(sequence_lengths)])
    frame = np.concatenate([np.arange(n) for n in sequence_lengths])
    num = len(frame)
    return {
        "image": rng.random((num, height, width, 3), np.float32),
        "image_lr": rng.random((num, height // 2, width // 2, 3), np.float32),
        "mask": rng.random((num, height, width, 1), np.float32),
        "mask_lr": rng.random((num, height // 2, width // 2, 1), np.float32),
        "intrinsics": rng.random((num, 4), np.float32),
        "c2w": rng.random((num, 4, 4), np.float32),
        "audio": rng.random((num, 5, 7), np.float32),
        "landmarks": rng.random((num, 68, 2), np.float32),
        "expression": rng.random((num, 3), np.float32),
        "blink": rng.random(num, np.float32),
        "identity": (sequence // 2).astype(np.int32),
        "sequence": sequence.astype(np.int32),
        "frame": frame.astype(np.int32),
    }


def row_of(arrays, sequence, frame):
    (rows,) = np.nonzero((arrays["sequence"] == sequence) & (arrays["frame"] == frame))
    assert len(rows) == 1
    return int(rows[0])


def take(pipeline, count):
    return [next(pipeline) for _ in range(count)]


def assert_batches_equal(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_in_memory_source_satisfies_the_protocol_and_spec():
    source = InMemoryFrameSource(make_arrays([3, 2]))
    assert isinstance(source, FrameSource)
    sizes = validate_example(source[0])
    assert sizes == {
        "height": 8, "width": 6, "height_lr": 4, "width_lr": 3,
        "window": 5, "feature": 7, "landmarks": 68, "expression": 3,
    }  # fmt: skip
    assert [source.next_index(i) for i in range(5)] == [1, 2, None, 4, None]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("image", np.zeros((8, 6, 3), np.float64), "float64"),
        ("mask", np.zeros((7, 6, 1), np.float32), "axis 0"),
        ("c2w", np.zeros((3, 4), np.float32), "axis 0"),
        ("frame", np.zeros((1,), np.int32), "expected int32"),
        ("blink", 0.5, "float"),
    ],
)
def test_validate_example_names_the_bad_key(key, value, message):
    example = InMemoryFrameSource(make_arrays([2]))[0]
    example[key] = value
    with pytest.raises(DatasetError, match=f"{key}.*{message}"):
        validate_example(example)
    del example[key]
    with pytest.raises(DatasetError, match=f"lacks keys \\['{key}'\\]"):
        validate_example(example)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(st.lists(st.integers(1, 6), min_size=1, max_size=5))
def test_pairs_are_consecutive_frames_of_one_sequence(lengths):
    arrays = make_arrays(lengths, height=2, width=2)
    pairs = pair_indices(InMemoryFrameSource(arrays))
    assert pairs.shape == (sum(lengths) - len(lengths), 2)
    np.testing.assert_array_equal(arrays["sequence"][pairs[:, 0]], arrays["sequence"][pairs[:, 1]])
    np.testing.assert_array_equal(arrays["frame"][pairs[:, 0]] + 1, arrays["frame"][pairs[:, 1]])


def test_pair_batches_hold_the_source_frames():
    arrays = make_arrays([5, 4, 3])
    pipeline = make_pipeline(InMemoryFrameSource(arrays), batch_size=4, seed=1, num_threads=2)
    for batch in take(pipeline, 5):
        for key, (shape, dtype) in FRAME_SPEC.items():
            assert batch[key].dtype == dtype
            assert batch[key].shape[:2] == (4, 2) and batch[key].ndim == len(shape) + 2, key
        for b in range(4):
            assert batch["sequence"][b, 0] == batch["sequence"][b, 1]
            assert batch["frame"][b, 0] + 1 == batch["frame"][b, 1]
            for t in range(2):
                row = row_of(arrays, batch["sequence"][b, t], batch["frame"][b, t])
                for key in FRAME_SPEC:
                    np.testing.assert_array_equal(batch[key][b, t], arrays[key][row], err_msg=key)


def test_one_epoch_visits_every_frame_once():
    arrays = make_arrays([6, 6])
    source = InMemoryFrameSource(arrays)
    pipeline = make_pipeline(source, batch_size=4, seed=3, pairs=False, num_epochs=1)
    batches = list(pipeline)
    assert len(batches) == pipeline.steps_per_epoch == 3
    seen = sorted(
        (int(s), int(f))
        for batch in batches
        for s, f in zip(batch["sequence"], batch["frame"], strict=True)
    )
    assert seen == sorted(zip(arrays["sequence"].tolist(), arrays["frame"].tolist(), strict=True))
    # Shuffled: the epoch is not in source order (probability 1/12! of a false failure).
    order = np.concatenate([b["sequence"] * 100 + b["frame"] for b in batches])
    assert not np.array_equal(order, np.sort(order))


def test_repeats_oversample_items_within_each_epoch():
    arrays = make_arrays([6, 6])
    source = InMemoryFrameSource(arrays)
    repeats = np.ones(12, np.int64)
    repeats[[2, 7]] = 3  # two frames come three times per epoch
    pipeline = make_pipeline(
        source, batch_size=2, seed=1, pairs=False, num_epochs=1, repeats=repeats
    )
    assert pipeline.steps_per_epoch == 8  # 12 + 2 x 2 extra items
    rows = np.concatenate([b["sequence"] * 6 + b["frame"] for b in pipeline])
    np.testing.assert_array_equal(np.bincount(rows, minlength=12), repeats)
    with pytest.raises(ValueError, match="count >= 1"):
        make_pipeline(source, batch_size=2, seed=1, pairs=False, repeats=np.zeros(12))
    with pytest.raises(ValueError, match="every one of the 12 items"):
        make_pipeline(source, batch_size=2, seed=1, pairs=False, repeats=np.ones(5))


def test_unshuffled_pipeline_keeps_source_order():
    arrays = make_arrays([8])
    pipeline = make_pipeline(
        InMemoryFrameSource(arrays), batch_size=2, seed=0, shuffle=False, pairs=False, num_epochs=1
    )
    np.testing.assert_array_equal(np.concatenate([b["frame"] for b in pipeline]), np.arange(8))


def test_same_seed_same_batches_other_seed_other_order():
    source = InMemoryFrameSource(make_arrays([7, 7]))
    run = lambda seed: take(make_pipeline(source, batch_size=4, seed=seed, num_threads=2), 6)
    first, again, other = run(11), run(11), run(12)
    assert_batches_equal(first, again)
    frames = lambda batches: np.concatenate([b["sequence"] * 100 + b["frame"] for b in batches])
    assert not np.array_equal(frames(first), frames(other))


@pytest.mark.parametrize("num_threads", [0, 3])
def test_resume_from_saved_state_continues_the_uninterrupted_run(num_threads):
    source = InMemoryFrameSource(make_arrays([9, 5, 6]))
    build = lambda: make_pipeline(source, batch_size=4, seed=5, num_threads=num_threads)
    # 7 steps of 4 pairs cross the epoch boundary (17 pairs), so the epoch reshuffle is covered.
    uninterrupted = take(build(), 12)
    stopped = build()
    take(stopped, 7)
    saved = json.loads(json.dumps(stopped.get_state()))
    resumed = build()
    resumed.set_state(saved)
    assert_batches_equal(take(resumed, 5), uninterrupted[7:])


def test_resume_into_a_different_pipeline_is_refused():
    source = InMemoryFrameSource(make_arrays([9]))
    state = make_pipeline(source, batch_size=4, seed=5).get_state()
    with pytest.raises(ValueError, match="batch_size.*\\(4, 2\\)"):
        make_pipeline(source, batch_size=2, seed=5).set_state(state)


def test_process_shards_are_disjoint_and_equal():
    arrays = make_arrays([10, 9])
    source = InMemoryFrameSource(arrays)
    shards = []
    for index in range(2):
        shard = grain.sharding.ShardOptions(shard_index=index, shard_count=2)
        pipeline = make_pipeline(
            source, batch_size=4, seed=2, pairs=False, num_epochs=1, shard=shard
        )
        batches = list(pipeline)
        assert all(b["frame"].shape == (2,) for b in batches)  # process-local half of 4
        shards.append(
            {
                (int(s), int(f))
                for b in batches
                for s, f in zip(b["sequence"], b["frame"], strict=True)
            }
        )
    assert len(shards[0]) == len(shards[1]) == 8  # 19 frames -> 9 per shard -> 4 batches of 2
    assert not shards[0] & shards[1]


def test_bad_batch_settings_are_refused():
    source = InMemoryFrameSource(make_arrays([4]))
    with pytest.raises(ValueError, match="multiple of the mesh's data-axis size 8"):
        make_pipeline(source, batch_size=12, seed=0, data_axis_size=8)
    with pytest.raises(ValueError, match="divisible by the 2 processes"):
        make_pipeline(
            source, batch_size=3, seed=0, shard=grain.sharding.ShardOptions(0, 2), pairs=False
        )
    with pytest.raises(DatasetError, match="3 consecutive-frame pairs.*fewer than one batch of 4"):
        make_pipeline(source, batch_size=4, seed=0)


class CrossingSource(InMemoryFrameSource):
    """A broken source whose next_index runs from one sequence into the next."""

    def next_index(self, i):
        return i + 1 if i + 1 < len(self) else None


def test_pairs_across_sequences_are_reported():
    pipeline = make_pipeline(
        CrossingSource(make_arrays([1, 1, 1, 1, 1])), batch_size=4, seed=0, num_threads=2
    )
    # Raised in a reader thread, the error reaches the training loop unchanged.
    with pytest.raises(DatasetError, match="paired frames \\[\\d, \\d\\] across sequences"):
        next(pipeline)


def test_malformed_frames_stop_the_pipeline_with_the_frame_index():
    arrays = make_arrays([6])
    arrays["audio"] = arrays["audio"].astype(np.float64)
    with pytest.raises(DatasetError, match="in-memory frame 0.*audio.*float64"):
        InMemoryFrameSource(arrays)


def test_batches_shard_over_an_8_device_data_axis():
    sharding = pytest.importorskip("jaxhead.train.sharding")
    import jax
    from jax.sharding import AxisType, PartitionSpec

    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    source = InMemoryFrameSource(make_arrays([9, 9]))
    pipeline = make_pipeline(source, batch_size=8, seed=0, data_axis_size=mesh.shape["data"])
    host = next(pipeline)
    placed = sharding.shard_batch(host, mesh, data_axis="data")
    assert placed.keys() == host.keys()
    for key, value in placed.items():
        assert value.shape == host[key].shape
        assert value.sharding.spec == PartitionSpec("data")
        shards = sorted(value.addressable_shards, key=lambda s: s.index[0].start)
        assert [s.data.shape[0] for s in shards] == [1] * 8
        np.testing.assert_array_equal(np.asarray(value), host[key], err_msg=key)


class MixedSizeSource(InMemoryFrameSource):
    """A source whose odd frames are larger: each frame is valid, a batch of them is not."""

    def __getitem__(self, i):
        example = super().__getitem__(i)
        if i % 2:
            example["image"] = np.zeros((10, 12, 3), np.float32)
            example["mask"] = np.zeros((10, 12, 1), np.float32)
        return example


def test_frames_of_different_sizes_in_one_batch_are_reported():
    pipeline = make_pipeline(MixedSizeSource(make_arrays([6])), batch_size=2, seed=0)
    with pytest.raises(DatasetError, match="disagree on 'image': \\[.*\\] vs \\[.*\\]"):
        next(pipeline)
