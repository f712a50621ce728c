"""Chunking long audio: which sample spans to attribute, and how to cross-fade their maps.

:func:`probe.attribute` attributes clips longer than ``max_unchunked_seconds`` (60 s by
default) chunk by chunk, so memory is bounded by one chunk whatever the clip's length.
Chunks start on multiples of a frame-aligned stride, overlap by ``overlap_seconds``, and
their maps are cross-faded linearly over the overlap (the weights sum to one everywhere).
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError

__all__ = ["plan_chunks", "fade_weights", "DEFAULT_CHUNK_SECONDS", "MAX_UNCHUNKED_SECONDS"]

#: chunk length used when a clip is chunked automatically
DEFAULT_CHUNK_SECONDS = 10.0
#: clips longer than this are chunked automatically
MAX_UNCHUNKED_SECONDS = 60.0


def plan_chunks(n: int, sr: int, hop: int, chunk_seconds: float, overlap_seconds: float, align: int):
    """Chunk ``[start, end)`` sample ranges: starts on multiples of ``align`` (a multiple of hop)."""
    L = max(align, int(round(chunk_seconds * sr / align)) * align)
    O = int(round(overlap_seconds * sr / align)) * align
    if O >= L:
        raise AnalysisError(f"overlap ({overlap_seconds:g} s) must be shorter than the chunk ({chunk_seconds:g} s)")
    step = L - O
    starts = list(range(0, max(n - O, 1), step))
    spans = []
    for s in starts:
        e = min(s + L, n)
        spans.append([s, e])
        if e >= n:
            break
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] < O + align:  # a sliver: fold it into the previous chunk
        spans.pop()
        spans[-1][1] = n
    return [tuple(s) for s in spans]


def fade_weights(spans, hop, n_frames_total):
    """Per chunk ``(first_frame, weights)``; weights are linear cross-fades that sum to 1."""
    firsts = [s // hop for s, _ in spans]
    lasts = [min(n_frames_total - 1, e // hop) for _, e in spans]
    out = []
    for i, (a, b) in enumerate(zip(firsts, lasts)):
        w = np.ones(b - a + 1, np.float32)
        if i > 0:
            ol = lasts[i - 1] - a + 1
            if ol > 0:
                w[:ol] *= (np.arange(ol) + 0.5) / ol
        if i + 1 < len(spans):
            ol = b - firsts[i + 1] + 1
            if ol > 0:
                w[-ol:] *= 1 - (np.arange(ol) + 0.5) / ol
        out.append((a, w))
    return out
