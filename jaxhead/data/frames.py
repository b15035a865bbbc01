"""The one frame-array layout of the NeRF's frame caches, shared by every reader.

A split is a dict of arrays with one row per frame (:data:`jaxhead.data.pipeline.FRAME_SPEC`:
``image`` / ``image_lr`` / ``mask`` as uint8, cameras, audio windows, landmarks, expression,
blink, identity, sequence, frame); :class:`CachedFrames` serves it as a `FrameSource` (float
images, the row index and a dense sequence index added) and knows the sequences' boundaries.
:func:`audio_spec` is how both readers cut each frame's audio window.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxhead.audio import frontend
from jaxhead.data.pipeline import FRAME_SPEC, validate_example


def audio_spec(config: ml_collections.ConfigDict) -> frontend.WindowSpec:
    """The NeRF frames' audio windows: ``config.audio_window`` log-mel steps (Wav2Lip's 80-mel
    spectrogram at 80 Hz) centred on each frame (:mod:`jaxhead.audio.frontend`)."""
    return frontend.WindowSpec("logmel", int(config.audio_window))


class CachedFrames:
    """A `FrameSource` over rendered arrays (uint8 images converted to float32 on access)."""

    _UINT8 = ("image", "image_lr", "mask")

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self._length = len(arrays["frame"])
        ids = np.stack([arrays["identity"], arrays["sequence"]], -1)
        self._continues = np.all(ids[1:] == ids[:-1], -1) & (
            arrays["frame"][1:] == arrays["frame"][:-1] + 1
        )
        # Dense sequence indices (the ``sequence`` ids are hashes) for per-sequence code tables.
        _, self._sequence_index = np.unique(arrays["sequence"], return_inverse=True)
        if self._length:
            validate_example(self[0], where="rendered frame 0")

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        out = {}
        for key in FRAME_SPEC:
            value = self.arrays[key][i]
            if key in self._UINT8:
                value = value.astype(np.float32) / 255.0
            out[key] = np.asarray(value)
        # Beyond FRAME_SPEC: the row (index of per-frame codes) and the dense sequence index.
        out["row"] = np.asarray(i, np.int32)
        out["sequence_index"] = np.asarray(self._sequence_index[i], np.int32)
        return out

    def next_index(self, i: int) -> int | None:
        return i + 1 if i + 1 < self._length and self._continues[i] else None

    @property
    def num_identities(self) -> int:
        return int(self.arrays["identity"].max()) + 1 if self._length else 0

    @property
    def num_sequences(self) -> int:
        return int(self._sequence_index.max()) + 1 if self._length else 0

    def sequence_rows(self) -> list[np.ndarray]:
        """Rows of each sequence in time order, one array per sequence."""
        starts = [0] + [i + 1 for i in range(self._length - 1) if not self._continues[i]]
        ends = starts[1:] + [self._length]
        return [np.arange(a, b) for a, b in zip(starts, ends, strict=True)]
