"""What the app's menus offer: attribution methods and targets that make sense for a model and clip."""

from __future__ import annotations

from probe.pipelines.layers import embedding_layers, layer_names

__all__ = ["ATTRIBUTION_METHODS", "target_options", "embedding_layers", "layer_names"]

#: attribution methods offered in the app (the pipeline's default, IG, first)
ATTRIBUTION_METHODS = ("ig", "saliency", "ixg", "gradshap", "occlusion", "gradcam")


def target_options(spec, example=None) -> list:
    """Target strings that make sense for this model and clip (first = the default).

    Detection: each ground-truth event of the example (class over its span), then each
    class over the whole clip. Separation: each source. Embeddings: each cluster. Encoders
    (``features``): the feature vectors' norm over the clip, then over each example event.
    """
    kind = spec.output_kind
    opts: list = []
    if kind in ("frame_probs", "clip_scores"):
        for ev in (getattr(example, "events", None) or []):
            t = f",t={float(ev['onset']):.2f}:{float(ev['offset']):.2f}" if kind == "frame_probs" else ""
            s = f"class={ev['label']}{t}"
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
            s = f"feature=norm,t={float(ev['onset']):.2f}:{float(ev['offset']):.2f}"
            if s not in opts:
                opts.append(s)
    return opts
