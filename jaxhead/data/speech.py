"""Speech-like audio and the phoneme timeline that drives the synthetic mouth.

A sentence is a random sequence of syllables (consonant-vowel-consonant) over a small phoneme
inventory, with pauses between words. Each phoneme has an acoustic recipe and a mouth target:

* vowels (a e i o u): voiced, glottal pulse train through three formant resonators; jaw open
  (most for "a"), lips rounded for "o" / "u";
* bilabials (b p m): lips closed; b/p are a silent closure followed by a release burst, m a quiet
  nasal murmur;
* fricatives (s f): band-passed noise, mouth nearly closed; alveolars (t d n l) and w in between.

The audio is classic source-filter synthesis (Klatt 1980, simplified): a glottal pulse train at a
speaker-dependent, slowly declining f0, low-passed for spectral tilt, through time-varying cascade
formant resonators (updated every 5 ms), plus noise sources for fricatives and bursts.

The mouth follows the same timeline *causally*: its trajectory is the phoneme targets smoothed
over ~25 ms (coarticulation), with bilabial closures forced shut, evaluated ``lip_lead`` seconds
ahead of the sound (the lips move ~50-100 ms before the acoustic onset, as in real speech), so an
audio-to-lip model sees a real, learnable mapping. Blinks and head motion are generated here too,
from their own random streams, independent of the speech (as in DFA-NeRF).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.ndimage
import scipy.signal

__all__ = [
    "PHONEMES",
    "Phoneme",
    "Timeline",
    "sample_timeline",
    "synthesize",
    "mouth_trajectory",
    "blink_trajectory",
    "head_motion",
]


class Phoneme(NamedTuple):
    """Acoustic recipe and mouth target of one phoneme."""

    formants: tuple[float, float, float]  # F1-F3 in Hz (held from the neighbour when unvoiced)
    voicing: float  # glottal source amplitude
    noise: str  # "", "s" (hiss), "f" (weak broadband), "burst" (release after a closure)
    jaw: float  # jaw opening target in [0, 1]
    round: float  # lip rounding target in [0, 1]
    bilabial: bool  # lips pressed together


# Formants of American English vowels (Peterson & Barney 1952, adult averages).
PHONEMES: dict[str, Phoneme] = {
    "a": Phoneme((730, 1090, 2440), 1.0, "", 0.95, 0.0, False),
    "e": Phoneme((530, 1840, 2480), 0.9, "", 0.55, 0.0, False),
    "i": Phoneme((270, 2290, 3010), 0.8, "", 0.25, 0.0, False),
    "o": Phoneme((570, 840, 2410), 0.9, "", 0.6, 0.8, False),
    "u": Phoneme((300, 870, 2240), 0.8, "", 0.25, 1.0, False),
    "b": Phoneme((200, 1100, 2400), 0.0, "burst", 0.0, 0.0, True),
    "p": Phoneme((200, 1100, 2400), 0.0, "burst", 0.0, 0.0, True),
    "m": Phoneme((280, 1300, 2500), 0.25, "", 0.0, 0.0, True),
    "t": Phoneme((300, 1700, 2600), 0.0, "burst", 0.15, 0.0, False),
    "d": Phoneme((300, 1700, 2600), 0.0, "burst", 0.15, 0.0, False),
    "n": Phoneme((280, 1700, 2600), 0.25, "", 0.15, 0.0, False),
    "l": Phoneme((360, 1300, 2700), 0.45, "", 0.25, 0.0, False),
    "w": Phoneme((300, 700, 2200), 0.4, "", 0.1, 0.9, False),
    "s": Phoneme((300, 1700, 2600), 0.0, "s", 0.1, 0.0, False),
    "f": Phoneme((300, 1400, 2500), 0.0, "f", 0.05, 0.0, False),
    "_": Phoneme((500, 1500, 2500), 0.0, "", 0.0, 0.0, False),  # silence
}
_VOWELS = "aeiou"
_ONSETS = "bpmtdnlwsf"
_CODAS = "mntsl"


class Timeline(NamedTuple):
    """A phoneme sequence: ``labels[k]`` sounds from ``starts[k]`` to ``ends[k]`` seconds."""

    labels: list[str]
    starts: np.ndarray
    ends: np.ndarray

    def at(self, times: np.ndarray) -> np.ndarray:
        """``[T]`` phoneme index (into ``list(PHONEMES)``) sounding at each time."""
        k = np.clip(np.searchsorted(self.ends, times, side="right"), 0, len(self.labels) - 1)
        names = list(PHONEMES)
        return np.array([names.index(self.labels[i]) for i in k], np.int32)


def sample_timeline(rng: np.random.Generator, seconds: float) -> Timeline:
    """A random sentence filling ``seconds``: 0.25 s of silence at each end, words in between."""
    labels, durations = ["_"], [0.25]
    total = 0.25
    while total < seconds - 0.25:
        for _ in range(rng.integers(1, 4)):  # syllables in the word
            if rng.random() < 0.8:
                c = _ONSETS[rng.integers(len(_ONSETS))]
                labels.append(c)
                durations.append(rng.uniform(0.06, 0.1))
            labels.append(_VOWELS[rng.integers(len(_VOWELS))])
            durations.append(rng.uniform(0.09, 0.2))
            if rng.random() < 0.3:
                labels.append(_CODAS[rng.integers(len(_CODAS))])
                durations.append(rng.uniform(0.05, 0.09))
        if rng.random() < 0.5:
            labels.append("_")
            durations.append(rng.uniform(0.08, 0.25))
        total = 0.25 + sum(durations[1:])
    # Scale the speech part to end 0.25 s before the end, then close with silence.
    speech = np.asarray(durations[1:])
    speech *= (seconds - 0.5) / speech.sum()
    durations = np.concatenate([[0.25], speech, [0.25]])
    labels.append("_")
    ends = np.cumsum(durations)
    ends[-1] = seconds
    starts = np.concatenate([[0.0], ends[:-1]])
    return Timeline(labels, starts, ends)


def _resonator(freq: float, bandwidth: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonator with unit DC gain (Klatt 1980, eq. 1)."""
    r = np.exp(-np.pi * bandwidth / rate)
    c = -(r**2)
    b = 2 * r * np.cos(2 * np.pi * freq / rate)
    a = 1 - b - c
    return np.array([a]), np.array([1.0, -b, -c])


def synthesize(
    timeline: Timeline, rng: np.random.Generator, sample_rate: int = 22_000, f0: float = 120.0
) -> np.ndarray:
    """Source-filter synthesis of a timeline.

    Args:
      timeline: the phonemes to speak.
      rng: noise source (jitter, aspiration, fricatives).
      sample_rate: output rate in Hz.
      f0: the speaker's mean fundamental frequency in Hz.

    Returns:
      ``[round(duration * sample_rate)]`` float32 waveform, peak 0.5.
    """
    n = int(round(timeline.ends[-1] * sample_rate))
    t = np.arange(n) / sample_rate
    idx = np.clip(np.searchsorted(timeline.ends, t, side="right"), 0, len(timeline.labels) - 1)
    specs = [PHONEMES[label] for label in timeline.labels]
    voicing = np.array([s.voicing for s in specs])[idx]
    # Formant tracks: targets at phoneme centres, linearly interpolated (held through silence).
    centres = 0.5 * (timeline.starts + timeline.ends)
    formants = np.array([s.formants for s in specs], np.float64)
    # 10 ms raised-cosine smoothing of the source amplitudes avoids clicks at phoneme edges.
    smooth = max(int(0.01 * sample_rate), 1)
    voicing = scipy.ndimage.uniform_filter1d(voicing, smooth)

    # Glottal source: one pulse per period of a slowly declining, jittered f0 contour.
    f0_track = f0 * (1.1 - 0.2 * t / t[-1]) * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * t))
    f0_track *= 1 + 0.01 * scipy.ndimage.gaussian_filter1d(rng.standard_normal(n), 200)
    phase = np.cumsum(f0_track / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    b, a = scipy.signal.butter(2, 800 / (sample_rate / 2))  # spectral tilt of the glottal pulse
    source = scipy.signal.lfilter(b, a, pulses) * voicing
    source += 0.02 * voicing * rng.standard_normal(n)  # aspiration

    # Cascade formant filter, coefficients updated every 5 ms with the filter state carried over.
    block = int(0.005 * sample_rate)
    voiced = np.zeros(n)
    states = [np.zeros(2) for _ in range(3)]
    bandwidths = (60.0, 90.0, 130.0)
    for start in range(0, n, block):
        seg = source[start : start + block]
        tc = t[start]
        for k in range(3):
            freq = np.interp(tc, centres, formants[:, k])
            bb, aa = _resonator(freq, bandwidths[k], sample_rate)
            seg, states[k] = scipy.signal.lfilter(bb, aa, seg, zi=states[k])
        voiced[start : start + block] = seg

    # Noise sources: hiss for s, weak broadband for f, a 15 ms burst at the release of stops.
    noise = np.zeros(n)
    white = rng.standard_normal(n)
    hiss_env = scipy.ndimage.uniform_filter1d(
        (np.array([s.noise == "s" for s in specs])[idx]) * 1.0, smooth
    )
    fric_env = scipy.ndimage.uniform_filter1d(
        (np.array([s.noise == "f" for s in specs])[idx]) * 1.0, smooth
    )
    b_s, a_s = scipy.signal.butter(4, [3500 / (sample_rate / 2), 0.95], "band")
    b_f, a_f = scipy.signal.butter(2, [1000 / (sample_rate / 2), 0.9], "band")
    noise += 0.35 * hiss_env * scipy.signal.lfilter(b_s, a_s, white)
    noise += 0.12 * fric_env * scipy.signal.lfilter(b_f, a_f, white)
    burst_env = np.zeros(n)
    for k, s in enumerate(specs):
        if s.noise == "burst":
            e = int(timeline.ends[k] * sample_rate)
            burst_env[max(e - int(0.015 * sample_rate), 0) : e] = 1.0
    noise += 0.4 * burst_env * scipy.signal.lfilter(b_f, a_f, white)

    audio = voiced / max(np.abs(voiced).max(), 1e-9) + noise
    audio += 1e-3 * rng.standard_normal(n)  # microphone noise floor
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def mouth_trajectory(
    timeline: Timeline, times: np.ndarray, lip_lead: float = 0.06, gain: float = 1.0
) -> np.ndarray:
    """Mouth parameters ``[T, 2]`` ``(jaw_open, lip_round)`` in ``[0, 1]`` at ``times`` seconds.

    Targets are smoothed over ~25 ms and read ``lip_lead`` seconds ahead of the sound, so the
    lips lead the audio; bilabial closures are forced shut at their (led) times.

    Args:
      timeline: the phonemes being spoken.
      times: ``[T]`` frame times in seconds.
      lip_lead: how much earlier than the sound the mouth reaches each target (seconds).
      gain: speaker's articulation amplitude (scales the jaw opening).
    """
    dt = 0.002  # fine grid for smoothing, then sampled at the frame times
    grid = np.arange(0.0, timeline.ends[-1] + dt, dt)
    idx = np.clip(np.searchsorted(timeline.ends, grid, side="right"), 0, len(timeline.labels) - 1)
    specs = [PHONEMES[label] for label in timeline.labels]
    jaw = np.array([s.jaw for s in specs])[idx] * gain
    rnd = np.array([s.round for s in specs])[idx]
    closed = np.array([s.bilabial for s in specs], np.float64)[idx]
    jaw = scipy.ndimage.gaussian_filter1d(jaw, 0.025 / dt, mode="nearest")
    rnd = scipy.ndimage.gaussian_filter1d(rnd, 0.035 / dt, mode="nearest")
    closed = scipy.ndimage.gaussian_filter1d(closed, 0.008 / dt, mode="nearest")
    jaw = jaw * np.clip(1.0 - 1.5 * closed, 0.0, 1.0)
    lead_times = np.asarray(times, np.float64) + lip_lead
    out = np.stack([np.interp(lead_times, grid, jaw), np.interp(lead_times, grid, rnd)], -1)
    return np.clip(out, 0.0, 1.0)


def blink_trajectory(rng: np.random.Generator, times: np.ndarray, rate: float = 0.3) -> np.ndarray:
    """Eyelid closure ``[T]`` in ``[0, 1]``: Poisson blinks (``rate`` per second, >= 1 s apart).

    Each blink closes in ~80 ms, stays shut ~40 ms and reopens in ~150 ms (real blinks reopen
    more slowly than they close).
    """
    times = np.asarray(times, np.float64)
    duration = times[-1] + 1.0 / 60 if len(times) else 0.0
    onsets, t = [], rng.uniform(0.2, 1.5)
    while t < duration:
        onsets.append(t)
        t += 1.0 + rng.exponential(max(1.0 / rate - 1.0, 0.1))
    closure = np.zeros_like(times)
    for t0 in onsets:
        close, hold, reopen = (
            rng.uniform(0.06, 0.1),
            rng.uniform(0.02, 0.06),
            rng.uniform(0.12, 0.2),
        )
        d = times - t0
        shape = np.where(d < 0, 0.0, np.clip(d / close, 0, 1))
        shape = np.where(d > close + hold, np.clip(1 - (d - close - hold) / reopen, 0, 1), shape)
        closure = np.maximum(closure, shape)
    return closure


def head_motion(rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random head pose: axis-angle ``[T, 3]`` (radians) and translation ``[T, 3]`` (m).

    A sum of three sinusoids per axis at 0.05-0.6 Hz with random phases; standard deviations
    about 2.5 deg pitch, 5 deg yaw, 1.5 deg roll and 3-4 mm, in the range of talking-head videos.
    """
    times = np.asarray(times, np.float64)

    def smooth_signal(std, size):
        freqs = rng.uniform(0.05, 0.6, (3, size))
        phases = rng.uniform(0, 2 * np.pi, (3, size))
        amps = rng.uniform(0.5, 1.0, (3, size))
        amps *= std * np.sqrt(2.0 / (amps**2).sum(0))  # variance of a*sin = a^2 / 2
        return (amps * np.sin(2 * np.pi * freqs * times[:, None, None] + phases)).sum(1)

    rotation = smooth_signal(np.radians([2.5, 5.0, 1.5]), 3)
    translation = smooth_signal(np.array([0.004, 0.003, 0.003]), 3)
    return rotation, translation
