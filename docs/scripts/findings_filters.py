"""Regenerate docs/findings_filters.md: filter responses, scale fits, reference matches and NMF relation.

Measures each zoo model's filter banks on the shipped checkpoint *and* on an untrained twin (same config,
fresh seeded PyTorch initialisation), writes the numbers to ``docs/scripts/results/filters.json`` (one entry per
model, stamped with the checkpoint's sha256), the figures to ``docs/img/filters_*.png``, and prints the doc's
tables in Markdown.

    nice -n 19 .venv/bin/python docs/scripts/findings_filters.py                       # every model
    nice -n 19 .venv/bin/python docs/scripts/findings_filters.py --models rawcnn_sed   # after a retraining
    .venv/bin/python docs/scripts/findings_filters.py --tables                         # print tables only

About 1–3 min of CPU per model (NMF fits on 3 test mixtures, trained + untrained).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import IMG, checkpoint_line, load_results, one_thread, save_results, stamp, untrained_spec, write_png  # noqa: E402

DOC = "filters"
#: zoo model → (banks analysed, NMF options {bases_layer, layer}); unfolded_nmf's ``recon`` is not found by the
#: discovery (its input is the atom axis), so its banks are forced in along the STFT bins
MODELS = {
    "convtasnet_lite": (("encoder", "decoder"), {}),
    "nmf_ae": (("encoder", "decoder"), {}),
    "unfolded_nmf": (("layers.0", "recon"), {"bases_layer": "recon", "synthesis": True}),
    "rawcnn_sed": (("frontend",), {"bases_layer": "frontend", "layer": "compress_norm"}),
}
NMF_BANK = {"convtasnet_lite": "decoder", "nmf_ae": "decoder"}
AXIS = {"unfolded_nmf": "bins"}
MIXTURES = (0, 1, 2)
K = 32
FIGURES = {  # (model, bank) → which figures of that bank go to docs/img
    ("convtasnet_lite", "encoder"): ("responses",),
    ("convtasnet_lite", "decoder"): ("centres", "octaves", "pairs_mel"),
    ("nmf_ae", "encoder"): ("responses", "octaves"),
    ("unfolded_nmf", "recon"): ("responses",),
    ("rawcnn_sed", "frontend"): ("responses", "gallery", "centres", "octaves"),
}
NMF_FIGURES = {"convtasnet_lite": ("bases", "activations"), "nmf_ae": ("activations",),
               "unfolded_nmf": ("bases", "activations")}


def data_power(name: str):
    """Mean power spectrum of test mixtures 0–2 → (freqs, cumulative share, stats)."""
    from model_zoo.registry import load_example

    spectra, sr = [], None
    for i in MIXTURES:
        ex = load_example(name, i)
        sr = ex.sr
        n = 4096
        y = np.asarray(ex.y, np.float64)
        frames = np.lib.stride_tricks.sliding_window_view(y, n)[:: n // 2]
        P = (np.abs(np.fft.rfft(frames * np.hanning(n), axis=-1)) ** 2).mean(axis=0)
        spectra.append(P / P.sum())
    P = np.mean(spectra, axis=0)
    f = np.fft.rfftfreq(4096, 1 / sr)
    cum = np.cumsum(P) / P.sum()
    stats = {"share_below_500": float(cum[f < 500][-1]), "share_below_1000": float(cum[f < 1000][-1]),
             "median_power_hz": float(f[np.searchsorted(cum, 0.5)]), "sample_rate": sr}
    return f, cum, stats


def nmf_compare(spec, example, *, beta, bases_layer=None, layer=None, synthesis=False, components=K, axis=None):
    """:func:`probe.pipelines.analyse_nmf`'s steps with the bases bank chosen (and forced in) explicitly.

    The pipeline discovers banks by their behaviour, so an untrained twin (random atoms) may have none; here the
    same bank is used for the trained and the untrained model. ``synthesis``: the activations are the bank's input
    (the unfolded NMF's H entering ``recon``) rather than what follows it.
    """
    import dataclasses

    from probe.analyze.model_nmf import capture_activations, top_variance
    from probe.analyze.nmf import NMFComparison, bank_bases, magnitude_spectrogram, nmf_likeness
    from probe.pipelines import find_banks
    from probe.pipelines.decomposition import MAX_UNITS

    grid = spec.grid
    S = magnitude_spectrogram(example.y, grid=grid)
    frame_times, freqs = grid.frame_times(S.shape[1]), grid.bin_frequencies()
    bank = find_banks(spec, layers=[bases_layer], axis=axis)[bases_layer]
    if synthesis:
        bank = dataclasses.replace(bank, role="synthesis")
    A, sps, offset, act_name = capture_activations(spec, example.y, layer=layer, bank=bank)
    A, _ = top_variance(A, MAX_UNITS)
    act_times = offset + np.arange(A.shape[1]) * sps if sps else None
    cmp = NMFComparison(int(components), beta_loss=beta, max_iter=400, threshold=0.5)
    cmp.fit(S, bases=bank_bases(bank, freqs), activations=A, activation_times=act_times,
            frame_times=frame_times if sps else None)
    like = nmf_likeness(A, S, times=act_times, frame_times=frame_times if sps else None, beta_loss=beta,
                        nmf_reference=False)
    return cmp, like, freqs, bank.name, act_name


def describe(bank, fr_fn, *, data_scale, span_refs=True):
    """Numbers of one bank (trained or untrained)."""
    from probe.analyze.filters import compare_references, scale_fit
    from probe.pipelines.filterbanks import FilterOptions, analyse_bank

    an = analyse_bank(bank, FilterOptions())
    fr, s = an.responses, an.summary
    out = {"n_filters": s["n_filters"], "n_taps": s.get("n_taps"), "labels": s["labels"],
           "median_bandwidth_hz": s.get("median_bandwidth_hz"), "median_q": s.get("median_q"),
           "median_selectivity_db": s.get("median_selectivity_db"),
           "reference_full": s.get("reference_match"), "reference_same_length": s.get("reference_match_same_length"),
           "unmatched_full": s.get("unmatched")}
    if an.fit is None:
        return out, an
    fit = scale_fit(fr, sample_rate=fr.sample_rate_, extra_scales={"data": data_scale})
    c = fr.centre_hz_[np.isfinite(fr.centre_hz_)]
    single = np.array([lab != "multi-band" for lab in fr.labels_]) & np.isfinite(fr.centre_hz_)
    out.update({"scale_r2": {k: round(v, 4) for k, v in fit.r2_.items()}, "best_scale": fit.best_scale_,
                "share_below_500": float((c < 500).mean()), "share_below_1000": float((c < 1000).mean()),
                "filters_per_octave": s["filters_per_octave"], "below_first_octave": int((c < fit.octave_edges_hz_[0]).sum()),
                "n_single_band": int(single.sum())})
    if single.sum() >= 3:
        fs = scale_fit(fr.centre_hz_[single], sample_rate=fr.sample_rate_)
        out["single_band_best"] = fs.best_scale_
        out["single_band_r2"] = {k: round(v, 4) for k, v in fs.r2_.items()}
    if span_refs:
        refs = compare_references(fr, span="bank")
        out["reference_span"] = {k: round(m.mean_cosine_, 4) for k, m in refs.items()}
    return out, an


def bank_figures(name, bank_name, an, same_length_refs):
    from probe.figures import filters as ff

    fr = an.responses
    want = FIGURES.get((name, bank_name), ())
    made = {"responses": lambda: ff.response_heatmap(fr),  # the builders' own titles name model, bank and size
            "gallery": lambda: ff.filter_gallery(an.bank, fr),
            "centres": lambda: ff.centre_frequency_plot(fr, an.fit),
            "octaves": lambda: ff.octave_density_plot(an.fit, sample_rate=fr.sample_rate_),
            "pairs_mel": lambda: ff.matched_responses_plot(fr, same_length_refs["mel"])}
    paths = []
    for key in want:
        paths.append(str(write_png(made[key](), IMG / f"filters_{name}_{bank_name}_{key}.png")))
    return paths


def run_model(name: str, figures: bool = True) -> dict:
    from model_zoo.registry import load_example, load_model
    from probe.analyze.filters import compare_references
    from probe.pipelines import find_banks

    bank_names, nmf_kw = MODELS[name]
    nmf_kw = {"bases_layer": NMF_BANK.get(name), **nmf_kw}
    spec, spec0 = load_model(name), untrained_spec(name)
    f, cum, dstats = data_power(name)

    def data_scale(c):
        return np.interp(c, f, cum)

    banks = find_banks(spec, layers=list(bank_names), axis=AXIS.get(name))
    banks0 = find_banks(spec0, layers=list(bank_names), axis=AXIS.get(name))
    entry = {**stamp(name), "data": dstats, "banks": {}, "figures": []}
    for b in bank_names:
        trained, an = describe(banks[b], None, data_scale=data_scale)
        untrained, _ = describe(banks0[b], None, data_scale=data_scale, span_refs=False)
        entry["banks"][b] = {"trained": trained, "untrained": untrained}
        if figures and an.fit is not None:
            same = compare_references(an.responses, taps="bank") if banks[b].axis == "samples" else an.refs
            entry["figures"] += bank_figures(name, b, an, same)
    # NMF relation, means over test mixtures 0-2
    nmf = {}
    for label, sp, betas in (("trained", spec, ("frobenius", "kl")), ("untrained", spec0, ("frobenius",))):
        for beta in betas:
            rows = []
            for i in MIXTURES:
                ex = load_example(name, i)
                cmp, like, freqs, bname, aname = nmf_compare(sp, ex, beta=beta, axis=AXIS.get(name), **nmf_kw)
                rows.append({"bases_cos": cmp.mean_cosine_,
                             "bases_ge_05": int(np.sum(cmp.matched_cosine_ >= 0.5)),
                             "act_r": cmp.mean_act_corr_, "nonneg": like.nonneg_share_, "hoyer": like.hoyer_,
                             "nnls_error": like.rel_error_, "nmf_error": cmp.nmf_rel_error_,
                             "bases_layer": bname, "activations_layer": aname})
                if figures and label == "trained" and beta == "frobenius" and i == 0:
                    from probe.figures import nmf as fn

                    for key in NMF_FIGURES.get(name, ()):
                        fig = (fn.bases_side_by_side(cmp, freqs) if key == "bases" else fn.activations_vs_h(cmp))
                        entry["figures"].append(str(write_png(fig, IMG / f"filters_nmf_{name}_{key}.png")))
            nmf[f"{label}|{beta}"] = {
                k: (float(np.mean([r[k] for r in rows])) if rows[0][k] is not None and not isinstance(rows[0][k], str)
                    else rows[0][k]) for k in rows[0]}
    if name == "unfolded_nmf":  # its own atom count
        rows = [nmf_compare(spec, load_example(name, i), beta="frobenius", components=40, axis=AXIS.get(name),
                            **nmf_kw)[0] for i in MIXTURES]
        nmf["trained|frobenius|K=40"] = {"bases_cos": float(np.mean([c.mean_cosine_ for c in rows])),
                                         "act_r": float(np.mean([c.mean_act_corr_ for c in rows]))}
    entry["nmf"] = nmf
    return entry


# ---- tables --------------------------------------------------------------------------------------------------
def _f(x, nd=2):
    return "–" if x is None else f"{x:.{nd}f}"


def tables(res: dict) -> str:
    out = []
    for name in res:
        out.append(checkpoint_line(name) if res[name]["checkpoint_sha256"] else "")
    out.append("\n| model | data: power < 500 Hz / < 1 kHz, median power Hz |\n|---|---|")
    for name, e in res.items():
        d = e["data"]
        out.append(f"| {name} | {d['share_below_500']:.0%} / {d['share_below_1000']:.0%}, {d['median_power_hz']:.0f} |")
    out.append("\n## 1. band-pass\n| model · bank | filters × taps | band / low / high / multi-band | median −3 dB BW (Hz) "
               "| median Q | median selectivity (dB) | untrained: labels · selectivity |\n|---|---|---|---|---|---|---|")

    def lab(d):
        L = d["labels"]
        return " / ".join(str(L.get(k, 0)) for k in ("band-pass", "low-pass", "high-pass", "multi-band"))

    for name, e in res.items():
        for b, v in e["banks"].items():
            t, u = v["trained"], v["untrained"]
            out.append(f"| {name} · {b} | {t['n_filters']} × {t['n_taps']} | {lab(t)} | {t['median_bandwidth_hz']:.0f} | "
                       f"{t['median_q']:.1f} | {t['median_selectivity_db']:.1f} | {lab(u)} · {u['median_selectivity_db']:.1f} |")
    out.append("\n## 2. scale\n| model · bank | linear | mel | ERB | log | data | best | best, single-band only "
               "| untrained: best (R²) |\n|---|---|---|---|---|---|---|---|---|")
    for name, e in res.items():
        for b, v in e["banks"].items():
            t, u = v["trained"], v["untrained"]
            r = t["scale_r2"]
            cells = " | ".join((f"**{r[s]:.3f}**" if s == t["best_scale"] else f"{r[s]:.3f}")
                               for s in ("linear", "mel", "erb", "log", "data"))
            sb = f"{t.get('single_band_best', '–')} (n = {t['n_single_band']})"
            out.append(f"| {name} · {b} | {cells} | {t['best_scale']} | {sb} | {u['best_scale']} "
                       f"({u['scale_r2'][u['best_scale']]:.3f}) |")
    out.append("\n| model · bank | < 500 Hz | < 1 kHz | untrained < 1 kHz | filters per octave |\n|---|---|---|---|---|")
    for name, e in res.items():
        for b, v in e["banks"].items():
            t, u = v["trained"], v["untrained"]
            fpo = sorted(t["filters_per_octave"].items(), key=lambda kv: float(kv[0].split("-")[0]))
            octs = " / ".join(f"{c}" for _, c in fpo)
            out.append(f"| {name} · {b} | {t['share_below_500']:.0%} | {t['share_below_1000']:.0%} | "
                       f"{u['share_below_1000']:.0%} | {octs} ({', '.join(k for k, _ in fpo)} Hz; "
                       f"{t['below_first_octave']} below) |")
    out.append("\n## 3. references (mel / gammatone / CQT)\n| model · bank | full band | learned span | same length "
               "| untrained: full · same length |\n|---|---|---|---|---|")

    def trio(d):
        return "–" if not d else " / ".join(f"{d[k]:.2f}" for k in ("mel", "gammatone", "cqt"))

    for name, e in res.items():
        for b, v in e["banks"].items():
            t, u = v["trained"], v["untrained"]
            un = trio(u["reference_full"]) + ("" if not u["reference_same_length"] else " · " + trio(u["reference_same_length"]))
            out.append(f"| {name} · {b} | {trio(t['reference_full'])} | {trio(t.get('reference_span'))} | "
                       f"{trio(t['reference_same_length'])} | {un} |")
    out.append("\n## 4. NMF\n| model (bases · activations) | NMF error Frob / KL | bases cos (Frob / KL) | bases ≥ 0.5 "
               "(of 32) | act r | non-neg | Hoyer | NNLS error | untrained: cos · r · Hoyer · error |\n"
               "|---|---|---|---|---|---|---|---|---|")
    for name, e in res.items():
        n = e["nmf"]
        fr, kl, un = n["trained|frobenius"], n["trained|kl"], n["untrained|frobenius"]
        out.append(f"| {name} ({fr['bases_layer']} · {fr['activations_layer']}) | {_f(fr['nmf_error'], 3)} / "
                   f"{_f(kl['nmf_error'], 3)} | {_f(fr['bases_cos'])} / {_f(kl['bases_cos'])} | "
                   f"{_f(fr['bases_ge_05'], 0)} / {_f(kl['bases_ge_05'], 0)} | {_f(fr['act_r'])} | {_f(fr['nonneg'])} | "
                   f"{_f(fr['hoyer'])} | {_f(fr['nnls_error'])} | {_f(un['bases_cos'])} · {_f(un['act_r'])} · "
                   f"{_f(un['hoyer'])} · {_f(un['nnls_error'])} |")
        if "trained|frobenius|K=40" in n:
            x = n["trained|frobenius|K=40"]
            out.append(f"|   K = 40: cos {x['bases_cos']:.2f}, r {x['act_r']:.2f} |||||||||")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models (default: all)")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--tables", action="store_true", help="only print the tables of the stored results")
    a = ap.parse_args(argv)
    one_thread()
    res = load_results(DOC)
    if not a.tables:
        for name in a.models.split(","):
            print(f"[filters] {name} …", file=sys.stderr, flush=True)
            res[name] = run_model(name, figures=not a.no_figures)
            save_results(DOC, res)
    print(tables({k: res[k] for k in MODELS if k in res}))


if __name__ == "__main__":
    main()
