"""Landmark helpers of the preprocessing: blink events of the blink signal (pure NumPy).

The layouts, :func:`to_ibug68`, :func:`eye_aspect_ratio` and :func:`blink_from_ear` are defined in
:mod:`jaxhead.face` and imported here for the preprocessing's modules.
"""

from __future__ import annotations

import numpy as np

from jaxhead.face import (  # noqa: F401 - the preprocessing's names for them
    LEFT_EYE,
    MEDIAPIPE_TO_IBUG68,
    MOUTH_68,
    RIGHT_EYE,
    blink_from_ear,
    eye_aspect_ratio,
    to_ibug68,
)


def count_blinks(blink: np.ndarray, high: float = 0.5, low: float = 0.25) -> int:
    """Blink events: rises above ``high`` after having been below ``low`` (hysteresis)."""
    count, armed = 0, True
    for value in np.asarray(blink, np.float64):
        if armed and value > high:
            count, armed = count + 1, False
        elif not armed and value < low:
            armed = True
    return count
