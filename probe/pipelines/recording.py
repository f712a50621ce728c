"""Record layer activations of a model on a clip to a run directory: the capture pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from ._base import Result, locked

__all__ = ["CaptureOptions", "CaptureRun", "record_activations", "AUTO_CHUNK_SECONDS"]

#: clips longer than this are captured in chunks of this length unless a chunk length is given
AUTO_CHUNK_SECONDS = 60.0


@dataclass(frozen=True)
class CaptureOptions:
    """Options of :func:`record_activations` (the only place their defaults live).

    Attributes
    ----------
    layers : str or tuple of str
        Glob, exact name, ``re:REGEX``, or several names (default: every layer).
    reduce : {"mean", "max"}, optional
        Reduce each record over time.
    every : int, optional
        Keep every k-th time step.
    max_steps : int, optional
        Keep at most this many time steps per record.
    chunk_seconds : float, optional
        Run the model on chunks of this length. Default: whole clips up to
        :data:`AUTO_CHUNK_SECONDS`, chunks of that length above it, so a long clip never runs
        as one forward pass.
    float16 : bool
        Store records as float16 (half the disk and memory).
    """

    layers: object = "*"
    reduce: str | None = None
    every: int | None = None
    max_steps: int | None = None
    chunk_seconds: float | None = None
    float16: bool = False


@dataclass
class CaptureRun(Result):
    """What was recorded: the run directory and every record's shape, axes and seconds per step."""

    run_dir: str
    model: str
    audio_seconds: float
    chunk_seconds: float | None
    layers: dict
    cache: object = None

    def to_json(self) -> dict:
        return {"run_dir": self.run_dir, "model": self.model, "audio_seconds": round(self.audio_seconds, 4),
                "chunk_seconds": self.chunk_seconds, "layers": self.layers, "warnings": list(self.warnings)}


def record_activations(spec, example, out_dir, options: CaptureOptions = CaptureOptions(), *, model_id: str | None = None,
                       audio_source: str | None = None, lock=None, keep_cache: bool = False,
                       overwrite: bool = False, progress: bool = False) -> CaptureRun:
    """Capture the selected layers on a clip and save them (safetensors + manifest) to ``out_dir``.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample
        At ``spec.sample_rate``.
    out_dir : path
        Run directory (written through :func:`probe.store.save_run`).
    options : CaptureOptions
    model_id, audio_source : str, optional
        Recorded in the manifest (e.g. ``zoo:NAME`` and the audio path).
    lock : context manager, optional
        Held while the model runs.
    keep_cache : bool
        Keep the in-memory :class:`~probe.Cache` on the result (not for chunked clips, which
        stream to disk chunk by chunk so memory stays bounded).
    overwrite : bool
        Allow a non-empty ``out_dir`` that is not a probe output (see :mod:`probe.outputs`).
    progress : bool
        A progress bar over the chunks of a long clip.

    Returns
    -------
    CaptureRun
        ``chunk_seconds`` says whether (and how) the clip was chunked.

    Examples
    --------
    >>> import tempfile, numpy as np, torch
    >>> from probe import ModelSpec, TFGrid
    >>> from probe.audio import AudioExample
    >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 16, stride=8), torch.nn.ReLU())
    >>> spec = ModelSpec(net, input_kind="waveform", grid=TFGrid(8000), input_layout="bcn")
    >>> ex = AudioExample(y=np.zeros(8000, np.float32), sr=8000, name="silence")
    >>> run = record_activations(spec, ex, tempfile.mkdtemp() + "/run")
    >>> run.layers["0"]["shape"], run.chunk_seconds
    ([1, 4, 999], None)
    """
    import torch

    from .. import diagnostics
    from ..audio import audio_hash
    from ..hooks import capture_audio
    from ..outputs import check_output_dir
    from ..store import capture_to_run, save_run

    o = options
    check_output_dir(out_dir, overwrite=overwrite)  # refuse before any work
    diagnostics.check_frame_length(example.y, example.sr, n_fft=spec.grid.n_fft)
    warnings = diagnostics.audio_warnings(example.y, example.sr, info=(example.info or {}).get("load"))
    duration = len(example.y) / example.sr
    chunk = o.chunk_seconds
    if chunk is None and duration > AUTO_CHUNK_SECONDS:
        chunk = AUTO_CHUNK_SECONDS
        warnings.append(f"{duration:.1f} s of audio captured in chunks of {chunk:g} s (pass chunk_seconds to choose)")
    layers = list(o.layers) if isinstance(o.layers, (list, tuple)) else o.layers
    kwargs = dict(reduce=o.reduce, every=o.every, max_steps=o.max_steps, dtype=torch.float16 if o.float16 else None)
    audio = {"source": audio_source or getattr(example, "name", None), "hash": audio_hash(example.y, example.sr),
             "duration": duration, "sr": example.sr}
    cache = None
    if chunk is not None and duration > chunk:
        # chunk by chunk straight to disk: memory bounded by one chunk's records, not the clip's
        with locked(lock), diagnostics.finite_outputs(spec.model):
            manifest = capture_to_run(spec, example.y, out_dir, layers, chunk_seconds=chunk,
                                      model_id=model_id or spec.name, audio=audio, extra={"warnings": warnings},
                                      overwrite=overwrite, progress=progress, **kwargs)
        layers_out = {k: _layer_json(e["shape"], e["axes"], e["seconds_per_step"], e.get("time_offset"),
                                     e.get("time_source")) for k, e in manifest["layers"].items()}
    else:
        with locked(lock), diagnostics.finite_outputs(spec.model):
            cache = capture_audio(spec, example.y, layers, **kwargs)
        for k, r in cache.items():
            diagnostics.check_finite_output(r.load(), what=f"output of layer {k!r}")
        save_run(cache, out_dir, model_id=model_id or spec.name, audio=audio, extra={"warnings": warnings},
                 overwrite=overwrite)
        layers_out = {k: _layer_json(list(r.shape), r.axes, r.seconds_per_step, r.time_offset, r.time_source)
                      for k, r in cache.items()}
    return CaptureRun(run_dir=str(out_dir), model=spec.name, audio_seconds=duration, chunk_seconds=chunk,
                      layers=layers_out, cache=cache if keep_cache else None, warnings=warnings)


def _layer_json(shape, axes, seconds_per_step, time_offset, time_source) -> dict:
    """One layer of the capture JSON: step ``k`` of its time axis is at ``time_offset + k * seconds_per_step`` s."""
    timed = seconds_per_step is not None
    return {"shape": list(shape), "axes": axes, "seconds_per_step": seconds_per_step,
            "time_offset": (float(time_offset or 0.0) if timed else None),
            "time_source": (time_source or "inferred") if timed else None}
