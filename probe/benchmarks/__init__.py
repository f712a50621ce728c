"""Benchmarks behind ``probe bench``: speed goals live here, not in timed unit tests.

Every figure is a ratio of medians measured side by side in one process (runs
interleaved), because these machines are noisy. Sections: :mod:`.capture`,
:mod:`.embeddings`, :mod:`.attribution`, :mod:`.corpus` (and, opt-in, :mod:`.app`) — all inside the package, so an installed
``probe bench`` runs every one of them.
"""

from __future__ import annotations

__all__ = ["run_all", "SECTIONS", "DEFAULT"]

#: benchmark sections, in the order ``probe bench`` runs them
SECTIONS = ("capture", "embeddings", "attribution", "corpus", "app")
#: what a plain ``probe bench`` runs; ``app`` (page times of the Streamlit app, :mod:`.app`) is opt-in
DEFAULT = ("capture", "embeddings", "attribution", "corpus")


def run_all(*, quick: bool = False, include=DEFAULT) -> dict:
    """Run the benchmark sections in ``include`` and return their numbers in one dict."""
    import torch

    from ..errors import SpecError

    unknown = [s for s in include if s not in SECTIONS]
    if unknown:
        raise SpecError(f"unknown benchmark section(s) {unknown}; known: {', '.join(SECTIONS)}")
    out: dict = {"torch_threads": torch.get_num_threads()}
    if "capture" in include:
        from .capture import _blstm_spec, _crnn_spec, capture_overhead

        reps = 7 if quick else 11
        b = capture_overhead(_blstm_spec(), repeats=reps)
        c = capture_overhead(_crnn_spec(), repeats=reps)
        out["capture_overhead"] = {"blstm": b["ratio"], "crnn": c["ratio"]}
        out["capture_detail"] = {"blstm": b, "crnn": c}
    if "embeddings" in include:
        from .embeddings import bench

        out.update(bench(quick=quick))
    if "attribution" in include:
        from .attribution import bench

        out.update(bench(quick=quick))
    if "corpus" in include:
        from .corpus import bench

        out.update(bench(quick=quick))
    if "app" in include:
        from .app import bench

        out.update(bench(quick=quick))
    return out
