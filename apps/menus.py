"""What the app's menus offer: attribution methods and targets that make sense for a model and clip."""

from __future__ import annotations

from probe.pipelines.layers import embedding_layers, layer_names

__all__ = ["ATTRIBUTION_METHODS", "target_options", "embedding_layers", "layer_names"]

#: attribution methods offered in the app (the pipeline's default, IG, first)
ATTRIBUTION_METHODS = ("ig", "saliency", "ixg", "gradshap", "occlusion", "gradcam")


def target_options(spec, example=None, default: str | None = None) -> list:
    """Target strings that make sense for this model and clip (first = the default).

    ``default`` (the library's default target for this model and clip, see
    :func:`probe.attribution.default_target_for`) comes first, so the page starts where the CLI
    and the report start. Detection: each ground-truth event of the example (class over its
    span), then each class over the whole clip. Separation: each source. Embeddings: each cluster. Encoders
    (``features``): the feature vectors' norm over the clip, then over each example event.
    """
    from probe.attribution import ClassTarget, FeatureTarget

    kind = spec.output_kind
    opts: list = []
    if kind in ("frame_probs", "clip_scores"):
        for ev in (getattr(example, "events", None) or []):
            # spelled as the library spells targets, so the default (the first event) is the same string
            t = (float(ev["onset"]), float(ev["offset"])) if kind == "frame_probs" else None
            s = str(ClassTarget(ev["label"], t=t))
            if s not in opts:
                opts.append(s)
        opts += [f"class={c}" for c in (spec.classes or [])]
    elif kind in ("masks", "sources"):
        opts += [f"source={i + 1}" for i in range(int(spec.n_sources or 2))]
    elif kind == "tf_embeddings":
        opts += [f"cluster={i + 1}" for i in range(int(spec.n_sources or 2))]
    elif kind == "features":
        opts.append("feature=norm")
        for ev in (getattr(example, "events", None) or []):
            s = str(FeatureTarget(t=(float(ev["onset"]), float(ev["offset"]))))
            if s not in opts:
                opts.append(s)
    if default:
        opts = [default] + opts
    return list(dict.fromkeys(opts))  # each once, in order
