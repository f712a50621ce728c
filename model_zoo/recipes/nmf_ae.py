"""Train the NMF-like waveform autoencoder (Smaragdis & Venkataramani 2017) as a latent-masking separator.

Usage::

    python -m model_zoo.recipes.nmf_ae [--minutes 11] [--dataset instruments] [--resume] [--smoke]

Same loop as Conv-TasNet-lite (:func:`model_zoo.recipes.convtasnet_lite.train_separator`:
PIT SI-SDR loss, random crops with dynamic remixing, validation-only model selection), then
the supervised NMF baseline of :mod:`model_zoo.baselines` is scored on the same test
mixtures; the card records whether the autoencoder beats it.
"""

from __future__ import annotations

NAME = "nmf_ae"

__all__ = ["main", "architecture"]


def architecture(c: dict) -> list[str]:
    """Card lines describing the NMF autoencoder with config ``c``."""
    K, L, S, H = c["n_filters"], c["kernel_size"], c["stride"], c["hidden"]
    return [
        f"encoder: Conv1d(1→{K}, kernel {L} = {1000 * L / c['sr']:g} ms, stride {S}, no bias) + softplus: learned "
        "analysis bases giving a non-negative latent 'magnitude spectrogram' w",
        f"masker: log1p(w) → 1x1 {K}→{H} → BLSTM ({c['lstm_layers']} layer, {H} units per direction) → "
        f"1x1 {2 * H}→{c['n_sources']}·{K} → softmax over sources (masks sum to one, as NMF's Wiener masks)",
        f"decoder: ConvTranspose1d({K}→1, kernel {L}, stride {S}, no bias): learned synthesis bases applied to "
        "each masked latent; the source estimates add up to the autoencoder's reconstruction of the mixture",
    ]


def _nmf_baseline(test, smoke: bool, dataset: str = "instruments"):
    """Score the supervised NMF baseline on the same test mixtures (``({"nmf_baseline": row}, notes)``)."""
    if smoke:
        return {}, ["smoke run: NMF baseline not scored"]
    try:
        from model_zoo.baselines import nmf_baseline_scores
    except ImportError as exc:
        return {}, [f"NMF baseline unavailable when this card was written ({exc}); rerun the recipe to compare"]
    from model_zoo.baselines import fitted_baseline

    nmf = fitted_baseline(dataset)
    res = nmf_baseline_scores(test, baseline=nmf, dataset=dataset, oracles=())
    row = {k: v for k, v in res["nmf_baseline"].items() if isinstance(v, (int, float))}
    desc = (f"supervised NMF baseline (model_zoo.baselines): {getattr(nmf, 'n_components', '?')} atoms per source, "
            f"beta loss {getattr(nmf, 'beta_loss', '?')}, fitted on training stems, Wiener-like masks on the STFT "
            f"grid; scored on the same {res['n_items']} test mixtures")
    return {"nmf_baseline": row}, [desc]


def _floor(card: dict) -> None:
    rows = card["metrics"]["test"]
    ours = rows["model"]["si_sdri"]
    base = rows.get("nmf_baseline", {}).get("si_sdri")
    if base is None:
        card["floors"] = {"nmf_baseline": "not scored"}
        return
    met = ours > base
    card["floors"] = {"nmf_baseline": {"baseline_test_si_sdri": round(base, 3), "ours_test_si_sdri": round(ours, 3),
                                       "met": bool(met)}}
    if not met:
        card["notes"].append(f"Floor MISSED: SI-SDRi {ours:.2f} dB does not beat the supervised NMF baseline "
                             f"({base:.2f} dB) on the same test mixtures.")


def main(argv=None) -> dict:
    """Command-line entry point (``model_zoo/train.py`` calls it)."""
    from model_zoo import nmf_ae
    from model_zoo.recipes.convtasnet_lite import train_separator

    def extra(card):
        if "metrics" in card:
            _floor(card)

    return train_separator(nmf_ae, argv, architecture=architecture, extra_systems=_nmf_baseline, card_extra=extra,
                           smoke_config={"n_filters": 16, "hidden": 8})


if __name__ == "__main__":
    main()
