"""One small exception hierarchy: every error probe raises on purpose is a :class:`ProbeError`.

Each child covers one concern, so callers can catch exactly what they can handle
(a bad file in a batch, an unknown layer in a notebook) and the CLI can turn any of
them into a one-line message.
"""

from __future__ import annotations

__all__ = [
    "ProbeError",
    "AudioError",
    "SpecError",
    "CheckpointError",
    "LayerNotFoundError",
    "CaptureError",
    "StoreError",
    "RunStoreError",
    "AnalysisError",
    "OutputError",
    "ModelError",
]


class ProbeError(Exception):
    """Root of all errors probe raises deliberately."""


class AudioError(ProbeError, ValueError):
    """Audio that cannot be used: missing, undecodable, empty, non-finite, too long, wrong rate or shape."""


class SpecError(ProbeError, ValueError):
    """A model spec (Python or TOML) that is incomplete or inconsistent."""


class CheckpointError(ProbeError):
    """A checkpoint that cannot be loaded safely (pickled code, wrong keys, corrupt file)."""


class LayerNotFoundError(ProbeError, KeyError):
    """A layer selector that matches nothing; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class CaptureError(ProbeError, RuntimeError):
    """Capture cannot run on this model (e.g. TorchScript modules have no Python hooks)."""


class StoreError(ProbeError):
    """A saved run directory that is missing files, fails its checksums or does not match its manifest."""


#: the earlier name of :class:`StoreError`, kept for callers that catch it
RunStoreError = StoreError


class AnalysisError(ProbeError, ValueError):
    """An analyzer given inputs it cannot interpret (wrong shapes, too few points, not fitted)."""


class OutputError(ProbeError):
    """An output folder probe refuses to write into (a user's folder, a file in the way)."""


class ModelError(ProbeError, RuntimeError):
    """The model itself failed on this input: its forward raised, or it returned NaN/Inf."""
