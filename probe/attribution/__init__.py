"""Attribution to time-frequency regions, for spectrogram and waveform models alike.

``probe.attribute(spec, y, target, method=...)`` returns an :class:`Attribution`: a
relevance map over the clip's magnitude STFT on the model's grid (seconds × Hz), with
Captum's convergence delta, the baseline, and what is needed to *listen* to the
explanation (:func:`listen`, :func:`write_explanation`). Quality checks (deletion /
insertion, randomisation, completeness, localisation) live in
:mod:`probe.analyze.faithfulness`; figures in :mod:`probe.figures.attribution`.

Examples
--------
>>> from probe.attribution import attribute, parse_target
>>> str(parse_target("source=1,f=200:1000"))
'source=1,f=200:1000'
"""

from __future__ import annotations

from .baselines import BASELINES, make_baseline
from .core import attribute, default_target_for
from .domain import TFForward, analysis_stft
from .isolation import preserved_model, shadow_model
from .methods import BUILDERS, METHODS
from .result import Attribution
from .audible import explanation_mask, listen, snr_db, write_explanation
from .targets import (CallableTarget, ClassTarget, EmbeddingTarget, FeatureTarget, SourceTarget, Target, TargetContext,
                      as_target, default_target, output_frame_times, parse_target)

__all__ = ["attribute", "default_target_for", "Attribution", "METHODS", "BASELINES", "make_baseline", "Target", "TargetContext", "ClassTarget",
           "SourceTarget", "EmbeddingTarget", "FeatureTarget", "CallableTarget", "parse_target", "as_target", "default_target",
           "output_frame_times", "listen", "explanation_mask", "write_explanation", "snr_db", "preserved_model",
           "TFForward", "analysis_stft", "shadow_model", "BUILDERS"]
