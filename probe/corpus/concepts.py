"""Acoustic concepts read from the audio itself (no labels needed), on any layer's time axis.

Every concept is a per-frame track computed once per clip on a fine base grid
(``hop_seconds``, 10 ms by default) and then averaged onto a layer's own steps
(:func:`align_tracks`), so a unit is always compared with what the audio did during
*its* frames.

=================  ==========  ====================================================================
name               kind        definition
=================  ==========  ====================================================================
``loudness``       continuous  RMS level in dB (``librosa.feature.rms``)
``centroid``       continuous  spectral centroid in octaves above 20 Hz (log2 of the Hz value)
``flatness``       continuous  spectral flatness (geometric / arithmetic mean of power), 0..1
``onset``          continuous  onset strength (``librosa.onset.onset_strength``)
``band_LO_HI``     continuous  log power in one octave band (125 Hz .. Nyquist), in dB
``harmonic``       continuous  harmonic share of the power after HPSS (``librosa.decompose.hpss``)
``voiced``         binary      pYIN says a pitch is present (``librosa.pyin``)
``register``       continuous  log2 of the pYIN f0 where voiced (NaN elsewhere)
``event:LABEL``    binary      inside a manifest event with that label (see :func:`event_tracks`)
=================  ==========  ====================================================================

pYIN and HPSS are the slow ones. pYIN runs on a coarse grid (``f0_hop_seconds``, 40 ms) within
``fmin``..``fmax`` (65..1047 Hz) with a quarter-semitone pitch grid (``f0_resolution``): its
Viterbi pass grows with the square of the number of pitch bins, so this is about 6× faster than
librosa's tenth-semitone default with the same voiced/unvoiced decision on every frame of the
signals we checked (harmonic tones at 110..880 Hz, vibrato, a chirp: voiced; white and brown noise,
clicks: unvoiced) and f0 within 0.0125 octave of it.
Either concept can be dropped from ``concepts``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AnalysisError

__all__ = ["DEFAULT_CONCEPTS", "BINARY_CONCEPTS", "ConceptTracks", "concept_tracks", "align_tracks",
           "event_tracks", "is_binary", "octave_bands"]

DEFAULT_CONCEPTS = ("loudness", "centroid", "flatness", "onset", "bands", "harmonic", "f0")
BINARY_CONCEPTS = ("voiced",)
_KNOWN = set(DEFAULT_CONCEPTS)


def is_binary(name: str) -> bool:
    """Whether a concept track is binary (compared by IoU) rather than continuous (correlation)."""
    return name in BINARY_CONCEPTS or name.startswith("event:") or name.startswith("label:")


def octave_bands(sr: int) -> list[tuple[int, int]]:
    """Octave bands ``(lo, hi)`` in Hz from 125 Hz up to the Nyquist frequency.

    Examples
    --------
    >>> octave_bands(16000)
    [(125, 250), (250, 500), (500, 1000), (1000, 2000), (2000, 4000), (4000, 8000)]
    """
    out, lo = [], 125
    while 2 * lo <= sr / 2:
        out.append((lo, 2 * lo))
        lo *= 2
    return out


@dataclass
class ConceptTracks:
    """Concept tracks of one clip on the base grid.

    Attributes
    ----------
    times : np.ndarray [shape=(n_frames,)]
        Centre of every base frame, seconds.
    tracks : dict of str → np.ndarray [shape=(n_frames,)]
    """

    times: np.ndarray
    tracks: dict


def concept_tracks(y, sr: int, *, concepts=DEFAULT_CONCEPTS, hop_seconds: float = 0.01,
                   f0_hop_seconds: float = 0.04, fmin: float = 65.0, fmax: float = 1047.0,
                   f0_resolution: float = 0.25) -> ConceptTracks:
    """Compute the acoustic concept tracks of a clip.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    concepts : sequence of str
        Any of ``loudness``, ``centroid``, ``flatness``, ``onset``, ``bands`` (all octave
        bands), ``harmonic``, ``f0`` (gives ``voiced`` and ``register``).
    hop_seconds : float
        Base grid step. 10 ms resolves onsets without costing much.
    f0_hop_seconds, fmin, fmax : float
        pYIN's coarse grid and search range (speech and most melody; pYIN cost grows with
        the range and the frame rate).
    f0_resolution : float
        pYIN's pitch grid in semitones (cost grows with its inverse squared; a quarter
        semitone is 0.02 octave, finer than any register difference the concept is for).

    Returns
    -------
    ConceptTracks

    Examples
    --------
    >>> sr = 16000; t = np.arange(sr) / sr
    >>> y = (0.5 * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)
    >>> ct = concept_tracks(y, sr, concepts=("bands", "flatness"))
    >>> int(np.argmax([ct.tracks[f"band_{lo}_{hi}"].mean() for lo, hi in octave_bands(sr)]))
    3
    """
    import librosa

    unknown = set(concepts) - _KNOWN
    if unknown:
        raise AnalysisError(f"unknown concepts {sorted(unknown)}; known: {', '.join(DEFAULT_CONCEPTS)}")
    # float64 throughout: multithreaded BLAS sums in another order than a one-thread Ray actor,
    # and float32 would show it; in float64 the difference vanishes when stored as float32
    y = np.asarray(y, dtype=np.float64)
    hop = max(1, int(round(hop_seconds * sr)))
    n_fft = int(2 ** np.ceil(np.log2(0.064 * sr)))
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True))
    n = S.shape[1]
    times = np.arange(n) * hop / sr
    power = S ** 2
    out: dict = {}
    if "loudness" in concepts:
        rms = librosa.feature.rms(S=S, frame_length=n_fft)[0]
        out["loudness"] = 20 * np.log10(rms + 1e-6)
    if "centroid" in concepts:
        c = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft)[0]
        out["centroid"] = np.log2(np.maximum(c, 20.0) / 20.0)
    if "flatness" in concepts:
        out["flatness"] = librosa.feature.spectral_flatness(S=S, amin=1e-10)[0]
    if "onset" in concepts:
        # from the centred mel spectrogram, without librosa's extra n_fft/(2 hop) padding, so that
        # value t is the rise from frame t-1 to frame t on this clip's own frame times
        mel_db = librosa.power_to_db(librosa.feature.melspectrogram(S=power, sr=sr, n_mels=64))
        out["onset"] = librosa.onset.onset_strength(S=mel_db, sr=sr, lag=1, center=False)[:n]
    if "bands" in concepts:
        freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
        for lo, hi in octave_bands(sr):
            sel = (freqs >= lo) & (freqs < hi)
            out[f"band_{lo}_{hi}"] = 10 * np.log10(power[sel].sum(axis=0) + 1e-10)
    if "harmonic" in concepts:
        H, P = librosa.decompose.hpss(S)
        h2, p2 = (H ** 2).sum(axis=0), (P ** 2).sum(axis=0)
        out["harmonic"] = h2 / (h2 + p2 + 1e-10)
    if "f0" in concepts:
        f0_hop = max(hop, int(round(f0_hop_seconds * sr)))
        frame = int(2 ** np.ceil(np.log2(4 * sr / fmin)))
        f0, _, prob = librosa.pyin(y, fmin=fmin, fmax=min(fmax, sr / 4), sr=sr, frame_length=frame,
                                     hop_length=f0_hop, center=True, resolution=f0_resolution)
        f0_times = np.arange(len(f0)) * f0_hop / sr
        # the Viterbi flag stays "voiced" through noise on its switch prior; the frame probability does not
        voiced = prob >= 0.5
        v = np.interp(times, f0_times, voiced.astype(np.float64))
        reg = np.log2(np.where(voiced, f0, np.nan))
        # nearest coarse frame for the register (interpolating across unvoiced gaps would invent pitch)
        idx = np.clip(np.searchsorted(f0_times, times), 0, len(f0_times) - 1)
        out["voiced"] = (v >= 0.5).astype(np.float64)
        out["register"] = np.where(out["voiced"] > 0, reg[idx], np.nan)
    return ConceptTracks(times=times, tracks={k: np.asarray(v, dtype=np.float64)[:n] for k, v in out.items()})


def align_tracks(ct: ConceptTracks, step_times, step_seconds: float) -> dict:
    """Average every base track over each layer step's span ``[t - step/2, t + step/2]``.

    Steps shorter than the base grid take the base value at their centre (linear
    interpolation). NaN base values are left out of the average; binary tracks are
    re-thresholded at 0.5.

    Parameters
    ----------
    ct : ConceptTracks
    step_times : np.ndarray [shape=(n_steps,)]
        Centre of each layer step, seconds.
    step_seconds : float

    Returns
    -------
    dict of str → np.ndarray [shape=(n_steps,), dtype=float32]
    """
    t = np.asarray(step_times, dtype=np.float64)
    base = ct.times
    base_step = base[1] - base[0] if len(base) > 1 else step_seconds
    lo = np.searchsorted(base, t - step_seconds / 2, side="left")
    hi = np.searchsorted(base, t + step_seconds / 2, side="right")
    out = {}
    for name, v in ct.tracks.items():
        finite = np.isfinite(v)
        csum = np.concatenate([[0.0], np.cumsum(np.where(finite, v, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(finite)])
        cnt = ccnt[hi] - ccnt[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = (csum[hi] - csum[lo]) / cnt
        if step_seconds < 2 * base_step or np.any(hi - lo == 0):
            fill = _interp_nan(t, base, v)
            use = (hi - lo) == 0 if step_seconds >= 2 * base_step else np.ones(len(t), bool)
            avg = np.where(use, fill, avg)
        if is_binary(name):
            avg = np.where(np.isfinite(avg), (avg >= 0.5).astype(np.float64), 0.0)
        out[name] = avg.astype(np.float32)
    return out


def _interp_nan(t, base, v):
    finite = np.isfinite(v)
    if not finite.any():
        return np.full(len(t), np.nan)
    out = np.interp(t, base[finite], v[finite])
    # a point whose nearest base frame is NaN stays NaN (no pitch invented in unvoiced gaps)
    idx = np.clip(np.searchsorted(base, t), 0, len(base) - 1)
    return np.where(finite[idx], out, np.nan)


def event_tracks(events, step_times, *, labels=None) -> dict:
    """Binary ``event:LABEL`` tracks: 1 where a step's centre lies inside an event of that label.

    Examples
    --------
    >>> event_tracks([{"start": 0.1, "end": 0.3, "label": "dog"}], np.array([0.0, 0.2, 0.4]))["event:dog"]
    array([0., 1., 0.], dtype=float32)
    """
    t = np.asarray(step_times, dtype=np.float64)
    names = sorted({e["label"] for e in events} | set(labels or ()))
    out = {f"event:{n}": np.zeros(len(t), dtype=np.float32) for n in names}
    for e in events:
        out[f"event:{e['label']}"][(t >= e["start"]) & (t < e["end"])] = 1.0
    return out
