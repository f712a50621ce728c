"""A self-contained HTML report of one model on one clip: what the app shows, in one file that works offline.

::

    report = build_report(spec, example)           # or write_report("zoo:crnn_sed", "example:crnn_sed:0", "out/")
    report.write("out/report.html")

The file embeds plotly.js once (in the first figure; later figures reuse it), every figure's
data, and every audio clip as a base64 WAV ``<audio>`` player, so it opens from disk with no
network. Sections (overview, filters, embeddings, attribution, activations) are computed with
:mod:`probe.pipelines`, the same functions the CLI and the app call; a section whose analysis does not
apply to the model (no filter layer, no embeddings) or whose piece is missing is kept with
a one-line note instead of failing the report.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ProbeError

__all__ = ["Report", "Section", "build_report", "write_report", "audio_tag", "SECTIONS", "OPTIONAL_SECTIONS"]

#: section ids in report order (the default set)
SECTIONS = ("overview", "filters", "embeddings", "attribution", "activations")
#: sections computed only when asked for (``sections=(..., "nmf")``)
OPTIONAL_SECTIONS = ("nmf",)
_TITLES = {"overview": "Overview", "filters": "Learned filters", "embeddings": "Embeddings",
           "attribution": "Attribution", "activations": "Activations", "nmf": "NMF comparison"}


# ---- parts --------------------------------------------------------------------------------------
def audio_tag(y, sr: int, *, label: str | None = None, peak: float | None = 0.99) -> str:
    """An ``<audio controls>`` player holding the clip as a base64 16-bit WAV.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
    sr : int
    label : str, optional
        Caption above the player.
    peak : float or None
        Scale so the loudest sample is at most this (``None``: clip to [-1, 1] only).
    """
    import soundfile as sf

    y = np.nan_to_num(np.asarray(y, np.float64).reshape(-1))
    m = float(np.abs(y).max(initial=0.0))
    if peak is not None and m > peak:
        y = y * (peak / m)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1.0, 1.0).astype(np.float32), int(sr), format="WAV", subtype="PCM_16")
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    cap = f'<div class="cap">{html.escape(label)}</div>' if label else ""
    return (f'<figure class="player">{cap}<audio controls preload="metadata" '
            f'src="data:audio/wav;base64,{b64}"></audio></figure>')


def _table(rows, header=None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table>{"<tr>" + head + "</tr>" if head else ""}{body}</table>'


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@dataclass
class Section:
    """One report section: an id, a title, parts (HTML strings or plotly figures) and its pipeline's JSON."""

    id: str
    title: str
    parts: list = field(default_factory=list)
    status: str = "ok"
    note: str | None = None
    seconds: float = 0.0
    data: dict | None = None

    def add(self, part) -> "Section":
        if part is not None:
            self.parts.append(part)
        return self

    def text(self, s: str) -> "Section":
        return self.add(f"<p>{html.escape(s)}</p>")

    def describe(self) -> dict:
        n_fig = sum(1 for p in self.parts if not isinstance(p, str))
        out = {"id": self.id, "title": self.title, "status": self.status, "note": self.note, "figures": n_fig,
               "seconds": round(self.seconds, 3)}
        if self.data is not None:
            out["data"] = self.data
        return out


@dataclass
class Report:
    """Sections plus a title; :meth:`to_html` renders one offline HTML file."""

    title: str
    sections: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def to_html(self) -> str:
        """The whole report; plotly.js is inlined once, before the first figure."""
        first = True
        out = []
        nav = " · ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in self.sections)
        for s in self.sections:
            chunk = [f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>']
            if s.note:
                chunk.append(f'<p class="note {s.status}">{html.escape(s.note)}</p>')
            for p in s.parts:
                if isinstance(p, str):
                    chunk.append(p)
                else:
                    chunk.append('<div class="fig">' + p.to_html(full_html=False, include_plotlyjs=first,
                                                                 config={"displaylogo": False, "responsive": True},
                                                                 default_width="100%") + "</div>")
                    first = False
            chunk.append("</section>")
            out.append("\n".join(chunk))
        meta = html.escape(json.dumps(self.meta, default=str))
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"generator\" content=\"probe\"><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><header><h1>{html.escape(self.title)}</h1><nav>{nav}</nav></header>"
                + "\n".join(out) + f'<footer>probe report · <code data-meta="{meta}">{html.escape(self.meta.get("created", ""))}'
                f"</code></footer></body></html>\n")

    def write(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_html(), encoding="utf-8")
        return path

    def describe(self) -> list:
        return [s.describe() for s in self.sections]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:0 auto;padding:0 16px 40px;color:#222}
header{border-bottom:1px solid #ddd;margin-bottom:12px} nav a{margin-right:4px}
h1{font-size:1.6em} h2{border-bottom:1px solid #eee;padding-top:16px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ddd;padding:3px 8px;font-size:.9em;text-align:left}
.note{color:#555;background:#f6f6f6;padding:6px 10px;border-left:3px solid #999}.note.skipped{border-color:#ff7f0e}.note.warning{border-color:#e6a700;background:#fff8e1;color:#5c4400}.note.error{border-color:#d62728}
.players{display:flex;flex-wrap:wrap;gap:12px}.player{margin:4px 0}.cap{font-size:.85em;color:#555}
.fig{margin:8px 0} summary{cursor:pointer;font-weight:600;margin:8px 0} footer{margin-top:32px;color:#888;font-size:.8em}
"""


# ---- sections ---------------------------------------------------------------------------------
def _players(items) -> str:
    return '<div class="players">' + "".join(audio_tag(y, sr, label=lab) for lab, y, sr in items) + "</div>"


def _overview(sec: Section, spec, example, *, lock=None) -> None:
    from .figures import clip as fc
    from .pipelines import SpectrogramOptions, match_sources, model_card, model_outputs, spectrogram

    card = model_card(spec)
    rows = [("model", card.name), ("task", card.task or "–"), ("input", f"{card.input_kind} at {card.sample_rate} Hz"),
            ("grid", f"n_fft {card.n_fft}, hop {card.hop_length} ({card.frame_seconds * 1000:.1f} ms)"
             + (f", {card.n_mels} mel bands" if card.n_mels else "")),
            ("output", card.output_kind + (f": {', '.join(card.classes)}" if card.classes else "")
             + (f", {card.n_sources} sources" if card.n_sources else "")),
            ("parameters", f"{card.params:,}"), ("audio", f"{example.name}, {example.duration:.2f} s at {example.sr} Hz")]
    sec.add(_table(rows))
    if card.metrics:
        sec.add(f"<details><summary>Model card metrics ({len(card.metrics)})</summary>"
                + _table(card.metrics, ["metric", "value"]) + "</details>")
    items = [("clip", example.y, example.sr)]
    if example.sources is not None:
        names = example.source_names or [f"source {i + 1}" for i in range(len(example.sources))]
        items += [(f"ground truth: {n}", s, example.sr) for n, s in zip(names, example.sources)]
    sec.add(_players(items))
    sec.add(fc.spectrogram_figure(spectrogram(example.y, spec.grid, SpectrogramOptions(max_frames=800)),
                                  events=example.events, classes=spec.classes, title="Spectrogram"))
    outs = model_outputs(spec, example.y, lock=lock)
    if outs.warnings:  # said once, in the section's note at its top (and in the JSON summary)
        sec.status, sec.note = "warning", "Warning: " + " · ".join(outs.warnings)
    fig = fc.outputs_figure(outs, title="Model output", threshold=(spec.info.get("postprocessing") or {}).get("threshold"))
    if outs.kind == "sources" and outs.values is not None:
        names = [str(n) for n in outs.labels]
        matches = match_sources(outs.values, example.sources, example.source_names, mixture=example.y) \
            if example.sources is not None and outs.sr == example.sr else None
        if matches:  # each output named by the ground-truth source it matches best (as the app's Overview)
            names = [f"{n} ≈ {m['name']} (SI-SDR {m['si_sdr_db']:.1f} dB, mixture {m['si_sdr_mixture_db']:.1f} dB)"
                     for n, m in zip(names, matches)]
            sec.data = {**(sec.data or {}), "source_matches": matches}
        sec.add("<h3>Separated sources</h3>" + _players([(n, s, outs.sr) for n, s in zip(names, outs.values)]))
    if fig is not None:
        sec.add(fig)


def _filters(sec: Section, spec, example, *, options=None, max_banks: int = 2, lock=None) -> None:
    from dataclasses import replace

    from .figures import filters as ff
    from .pipelines import FilterOptions, analyse_filters, find_banks

    banks = find_banks(spec, lock=lock)
    if not banks:
        sec.status, sec.note = "skipped", "no layer whose kernels lie on waveform samples or frequency bins"
        return
    options = options or FilterOptions()
    if not options.layers:  # the first few banks; name layers to see others
        options = replace(options, layers=tuple(list(banks)[:max_banks]))
    res = analyse_filters(spec, options, banks=banks)
    sec.data = res.to_json()
    for name, r in res.banks.items():
        bank, fr = r.bank, r.responses
        sec.add(f"<h3>{html.escape(name)} — {html.escape(bank.module_type)}, {bank.n_filters} filters ({bank.axis})</h3>")
        if r.fit is not None:
            sec.add(_table([(s, round(r2, 4), "best" if s == r.fit.best_scale_ else "") for s, r2 in r.fit.r2_.items()],
                           ["scale", "R² of centres", ""]))
            sec.add(_table([(k, round(m.mean_cosine_, 4), int(m.unmatched_.size)) for k, m in r.refs.items()],
                           ["reference bank", "mean matched cosine", "unmatched"]))
        elif r.note:
            sec.text(r.note)
        sec.add(ff.filter_gallery(bank, fr, max_filters=24))
        if r.fit is not None:
            sec.add(ff.centre_frequency_plot(fr, r.fit))
            sec.add(ff.matched_responses_plot(fr, r.refs[r.best_reference]))
    if len(banks) > len(res.banks):
        rest = [k for k in banks if k not in res.banks]
        sec.text(f"{len(rest)} more filter layer(s) not shown: {', '.join(rest)}")


def _embeddings(sec: Section, spec, example, *, options=None, lock=None) -> None:
    from .figures.embeddings import embedding_scatter
    from .pipelines import EmbeddingOptions, analyse_embeddings

    # layer=None: the pipeline's first layer (tf_embeddings, else the last time-resolved layer before the head), as
    # probe embed and the app take it; a model with none is skipped with the pipeline's reason
    res = analyse_embeddings(spec, example, options or EmbeddingOptions(), lock=lock)
    sec.data = res.to_json()
    colour = next(c for c in ("source", "class", "cluster", "freq", "time") if c in res.colourings)
    pts, proj = res.points, res.projection.upper()
    sec.text(f"Layer {res.layer}: {len(pts)} {'T-F bins' if res.kind == 'tf' else 'frames'} of dimension {pts.X.shape[1]}, "
             f"{proj} map (trustworthiness {res.trustworthiness:.3f}), {res.n_clusters} {res.method} clusters.")
    if res.agreement:
        a = res.agreement
        sec.add(_table([("mask accuracy", round(a["mask_accuracy"], 4)), ("ARI", round(a["ari"], 4)),
                        ("NMI", round(a["nmi"], 4))], ["agreement with the oracle", "value"]))
    axes = (f"{proj} 1", f"{proj} 2")
    sec.add(embedding_scatter(pts, res.coords, color=colour, clusters=res.clusters, axis_names=axes))
    if colour != "cluster":
        sec.add(embedding_scatter(pts, res.coords, color="cluster", clusters=res.clusters, axis_names=axes))
    sec.add("<h3>Listen to each cluster</h3>"
            + _players([(f"cluster {j + 1}" + (f" ({n})" if n != f"cluster {j + 1}" else ""), a, res.sr)
                        for j, (a, n) in enumerate(zip(res.cluster_audio, res.cluster_names or
                                                       [f"cluster {i + 1}" for i in range(len(res.cluster_audio))]))]))


def _attribution(sec: Section, spec, example, *, options=None, lock=None) -> None:
    from .figures.attribution import attribution_figure, deletion_figure, target_track_figure
    from .pipelines import AttributionOptions, analyse_attribution

    res = analyse_attribution(spec, example, options or AttributionOptions(), lock=lock)
    sec.data = res.to_json()
    attr, summ = res.attribution, res.summary
    rows = [("target", summ["target"]), ("method", summ["method"]), ("baseline", summ["baseline"])]
    if res.steps_used is not None:
        rows.append(("steps used", res.steps_used))
    for k in ("target_value", "baseline_value", "completeness_error"):
        if summ.get(k) is not None:
            rows.append((k.replace("_", " "), summ[k]))
    usable = bool(res.deletion) and res.deletion.get("auc") is not None
    if usable:
        d = res.deletion
        rows += [("deletion AUC (attribution order, lower is better)", d["auc"]), ("deletion AUC (random order)", d["auc_random"])]
    sec.add(_table(rows))
    if res.warnings:  # said once, in the section's note at its top (and in the JSON summary)
        sec.status, sec.note = "warning", "Warning: " + " · ".join(res.warnings)
    sec.add(attribution_figure(attr, boxes=example.events, mel=spec.input_kind == "logmel"))
    if attr.track is not None:
        sec.add(target_track_figure(attr))
    if usable:
        sec.add(deletion_figure(res.deletion))
    sec.add(f"<h3>Listen to the explanation (top {res.top_percent:g} % of bins) and its complement</h3>"
            + _players([("explanation", res.explanation, res.sr), ("complement", res.complement, res.sr)]))


def _activations(sec: Section, spec, example, *, layers=None, max_steps: int = 800, lock=None) -> None:
    from .figures import clip as fc
    from .pipelines import ActivationOptions, capture_layer, default_layer, time_layers

    if not layers:
        all_t = time_layers(spec, example.y, lock=lock)
        pick = default_layer(spec, example.y, lock=lock)
        layers = [n for n in dict.fromkeys([all_t[0] if all_t else None, pick]) if n]
    if not layers:
        sec.status, sec.note = "skipped", "no layer with a time axis"
        return
    for name in layers:
        act = capture_layer(spec, example.y, name, ActivationOptions(max_rows=256, max_steps=max_steps), lock=lock)
        sec.add(fc.activation_figure(act, height=360))


def _nmf(sec: Section, spec, example, *, options=None, lock=None) -> None:
    from .figures import nmf as fn
    from .pipelines import NMFOptions, analyse_nmf

    res = analyse_nmf(spec, example, options or NMFOptions(), lock=lock)
    sec.data = res.to_json()
    cmp, like = res.comparison, res.likeness
    rows = [("bases layer", res.bases_layer or "–"), ("activations", res.activations_layer),
            ("NMF rank", like["nmf_rank"]), ("NMF relative error", like["nmf_rel_error"])]
    nmf = sec.data["nmf"]
    for part in ("bases", "activations"):
        for k, v in (nmf.get(part) or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                rows.append((f"{part}: {k.replace('_', ' ')}", v))
    sec.add(_table(rows))
    for w in res.warnings:
        sec.text(f"Warning: {w}")
    if hasattr(cmp, "cosine_"):
        sec.add(fn.bases_side_by_side(cmp, res.freqs))
    if hasattr(cmp, "act_corr_"):
        sec.add(fn.activations_vs_h(cmp))


_BUILDERS = {"overview": _overview, "filters": _filters, "embeddings": _embeddings, "attribution": _attribution,
             "activations": _activations, "nmf": _nmf}


def build_report(spec, example, *, sections=SECTIONS, title: str | None = None, options: dict | None = None,
                 progress=None, lock=None) -> Report:
    """Compute every section for one model and clip.

    Parameters
    ----------
    spec : ModelSpec
    example : AudioExample
        At the model's sample rate.
    sections : sequence of str
        Subset of :data:`SECTIONS`, in the order wanted.
    options : dict, optional
        Per-section keyword arguments; the analyses take their pipeline's options, e.g.
        ``{"attribution": {"options": AttributionOptions(target="class=bell")}}``.
    progress : callable, optional
        Called with each section id before it is computed.
    lock : context manager, optional
        Held around every use of the model (one shared between threads).

    Returns
    -------
    Report
        Sections whose analysis raised a :class:`~probe.errors.ProbeError` are kept with
        ``status="skipped"`` and the error as their note; any other exception gives
        ``status="error"`` (a bug to report), so one failing analysis never costs the others.
    """
    unknown = [s for s in sections if s not in _BUILDERS]
    if unknown:
        from .errors import SpecError

        raise SpecError(f"unknown report section(s) {unknown}; known: {', '.join(SECTIONS + OPTIONAL_SECTIONS)}")
    from .diagnostics import input_warnings

    options = options or {}
    name = spec.name
    warnings = input_warnings(spec, example)  # refuses a clip shorter than one frame
    rep = Report(title or f"probe report — {name} on {example.name}",
                 meta={"model": name, "audio": example.name, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "warnings": warnings})
    if warnings:  # degenerate input is said first, before figures that would look fine
        sec = Section("warnings", "Warnings about the input")
        sec.status, sec.note = "warning", " · ".join(warnings)
        rep.sections.append(sec)
    for sid in sections:
        if progress:
            progress(sid)
        sec = Section(sid, _TITLES[sid])
        t0 = time.perf_counter()
        try:
            _BUILDERS[sid](sec, spec, example, lock=lock, **options.get(sid, {}))
        except ProbeError as exc:  # the analysis does not apply, or a piece is missing
            sec.status, sec.note = "skipped", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug in one analysis must not cost the other sections
            sec.status, sec.note = "error", f"{type(exc).__name__}: {exc}"
        sec.seconds = time.perf_counter() - t0
        rep.sections.append(sec)
    return rep


def write_report(model_ref: str, audio_ref: str, out_dir, *, sections=SECTIONS, options: dict | None = None,
                 filename: str = "report.html", max_seconds: float | None = 600.0, overwrite: bool = False) -> dict:
    """Resolve ``model_ref`` / ``audio_ref`` (as the CLI does), build the report and write it.

    ``model_ref`` may also be a loaded :class:`~probe.adapter.ModelSpec` (e.g. one whose time
    axes were overridden with ``--seconds-per-step`` / ``--time-offset``).

    Returns
    -------
    dict
        ``{"report": path, "sections": [{"id", "title", "status", "note", "figures", "seconds"}], "bytes": size}``
    """
    from .outputs import check_output_dir, output_dir
    from .resolve import load, resolve_audio

    check_output_dir(out_dir, overwrite=overwrite)  # refuse a user's folder before any work
    from .adapter import ModelSpec

    spec = model_ref if isinstance(model_ref, ModelSpec) else load(model_ref)
    spec.model.eval()
    example = resolve_audio(audio_ref, spec.sample_rate, max_seconds=max_seconds)
    rep = build_report(spec, example, sections=sections, options=options)
    # written to a temporary folder and renamed: a failed run never leaves a report that looks current
    with output_dir(out_dir, kind="report", overwrite=overwrite) as tmp:
        rep.write(Path(tmp) / filename)
    path = Path(out_dir) / filename
    return {"report": str(path), "sections": rep.describe(), "bytes": path.stat().st_size,
            "warnings": rep.meta.get("warnings", [])}


# ---- corpus runs ------------------------------------------------------------------------------
def unit_excerpts(run, layer: str, unit: int, *, k: int = 3, seconds: float = 1.0) -> list:
    """The top-``k`` activating excerpts of one unit: ``[(caption, y, sr), ...]``, cut from the clip files.

    Clip and time come from the run's top-k table (``unit_stats.parquet``); a clip whose file
    moved since the run is skipped (its caption says so in the table, not here).
    """
    from .corpus.inputs import load_clip
    from .corpus.run import CorpusRun, open_run

    run = run if isinstance(run, CorpusRun) else open_run(run)
    rows = [r for r in run.unit_stats().to_pylist() if r["variant"] == "trained" and r["layer"] == layer
            and int(r["unit"]) == int(unit)]
    if not rows:
        return []
    row, sr, out = rows[0], run.sample_rate, []
    for rank, (cid, t, v) in enumerate(zip(row["top_clips"][:k], row["top_times"][:k], row["top_values"][:k])):
        clip = run.clips[run.clip_index[cid]]
        try:
            y = load_clip(clip, sr, min_seconds=0.0)
        except Exception:  # the source moved or became unreadable since the run
            continue
        n = int(seconds * sr)
        a = max(0, min(len(y) - n, int((t - seconds / 2) * sr)))  # centred on the step, kept inside the clip
        b = min(len(y), a + n)
        out.append((f"#{rank + 1}: {cid} at {t:.2f} s (activation {v:.3g})", y[a:b], sr))
    return out


def corpus_unit_table(dissection) -> list:
    """Rows ``{layer, unit, label, score, z, q_unit, best}`` of a dissection, highest concept score first."""
    rows = [{"layer": u["layer"], "unit": int(u["unit"]), "label": u.get("label"), "score": u.get("score"),
             "z": u.get("z"), "best": u.get("best"), "best_z": u.get("best_z"), "q_unit": u.get("q_unit")}
            for u in dissection.units]
    return sorted(rows, key=lambda r: (r["label"] is None, -(r["score"] if r["score"] is not None else -np.inf),
                                       -(r["best_z"] or 0.0)))


def load_dissection(run, *, options=None, compute: bool = True):
    """The run's dissection: read from ``RUN/dissect/dissect.json`` + ``pairs.parquet``, else computed
    and written with :func:`probe.pipelines.corpus.corpus_dissect` (when ``compute``), else ``None``."""
    import pyarrow.parquet as pq

    from .corpus.run import CorpusRun, open_run
    from .pipelines.corpus import CorpusDissection, corpus_dissect

    run = run if isinstance(run, CorpusRun) else open_run(run)
    folder = run.path / "dissect"
    if (folder / "dissect.json").is_file() and (folder / "pairs.parquet").is_file():
        d = json.loads((folder / "dissect.json").read_text())
        return CorpusDissection(pairs=pq.read_table(folder / "pairs.parquet").to_pylist(), units=d["units"],
                                summary=d["summary"], out=str(folder))
    if not compute:
        return None
    return corpus_dissect(run, **({} if options is None else {"options": options}))


def write_corpus_report(run_dir, out_dir, *, label: str | None = None, layer: str | None = None, excerpts: int = 3,
                        dissect_options=None, probe_options=None, map_options=None, overwrite: bool = False,
                        filename: str = "index.html") -> dict:
    """An offline HTML report of a corpus run: unit table, dissection heat maps, probe plot, corpus map.

    The dissection is read from ``RUN/dissect`` (computed with :func:`~probe.pipelines.corpus.corpus_dissect`
    when absent); probe and map come from :func:`~probe.pipelines.corpus.corpus_probe` /
    :func:`~probe.pipelines.corpus.corpus_map`. Figures are written next to ``index.html`` with
    :func:`probe.figures.write_figures` (one local ``plotly.min.js``, no CDN) and shown in frames;
    excerpts of labelled units are embedded as base64 WAV players. Everything goes to a
    temporary folder renamed into place (:func:`probe.outputs.output_dir`).

    Returns
    -------
    dict
        ``{"report": path, "figures": [names], "labelled": n, "sections": {id: status/note}}``
    """
    from .corpus.figures import dissection_figure
    from .corpus.run import open_run
    from .figures import write_figures
    from .outputs import check_output_dir, output_dir
    from .pipelines.corpus import MapOptions, ProbeOptions, corpus_map, corpus_probe

    check_output_dir(out_dir, overwrite=overwrite)
    run = open_run(run_dir)
    dis = load_dissection(run, options=dissect_options)
    figs, notes, parts = {}, {}, []
    table = corpus_unit_table(dis)
    labelled = [r for r in table if r["label"]]
    parts.append(f'<section id="units"><h2>Units</h2><p>{len(labelled)} of {len(table)} units labelled '
                 f'(FDR {dis.summary.get("fdr")}, {dis.summary.get("permutations")} shifted-time permutations, '
                 f'random-init control: {dis.summary.get("random_init_control")}).</p>')
    parts.append(_table([[r["layer"], r["unit"], r["label"] or "", r["score"] if r["score"] is not None else "",
                          r["best"], r["best_z"], r["q_unit"]] for r in table],
                        ["layer", "unit", "label", "concept score", "best concept", "best z", "q (unit)"]))
    for r in labelled:
        items = unit_excerpts(run, r["layer"], r["unit"], k=excerpts)
        if items:
            parts.append(f"<h3>{html.escape(r['layer'])} unit {r['unit']} → {html.escape(r['label'])}</h3>"
                         + _players(items))
    parts.append("</section>")
    for la in dis.summary.get("layers", run.layers):
        figs[f"dissection_{la}"] = dissection_figure({"pairs": dis.pairs, "units": dis.units}, la)
    label = label or ("label" if any(c.label for c in run.clips) else "event" if any(c.events for c in run.clips)
                      else (run.concepts[0] if run.concepts else "label"))
    try:
        figs["probe"] = corpus_probe(run, options=probe_options or ProbeOptions(label=label)).figure()
    except ProbeError as exc:
        notes["probe"] = f"{type(exc).__name__}: {exc}"
    try:
        figs["map"] = corpus_map(run, options=map_options or MapOptions(layer=layer)).figure()
    except ProbeError as exc:
        notes["map"] = f"{type(exc).__name__}: {exc}"
    names = {f"dissection_{la}": f"Dissection of {la}" for la in dis.summary.get("layers", run.layers)}
    names.update(probe=f"Probe score per layer ({label!r})", map="Corpus map")
    with output_dir(out_dir, kind="corpus-report", overwrite=overwrite) as tmp:
        written = write_figures(figs, tmp, ("html",))
        frames = []
        for key, title in names.items():
            frames.append(f'<section id="{html.escape(key)}"><h2>{html.escape(title)}</h2>')
            if key in figs:
                name = Path(written[list(figs).index(key)]).name
                frames.append(f'<iframe src="{html.escape(name)}" style="width:100%;height:640px;border:0" '
                              f'title="{html.escape(title)}"></iframe><p><a href="{html.escape(name)}">open</a></p>')
            else:
                frames.append(f'<p class="note skipped">{html.escape(notes.get(key, "not available"))}</p>')
            frames.append("</section>")
        title = f"probe corpus report — {run.manifest['model']['ref']} on {len(run.clips)} clips"
        doc = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="probe">'
               f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><header><h1>"
               f"{html.escape(title)}</h1></header>" + "\n".join(parts + frames)
               + f"<footer>probe corpus report · {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}</footer>"
               "</body></html>\n")
        (Path(tmp) / filename).write_text(doc, encoding="utf-8")
    return {"report": str(Path(out_dir) / filename), "figures": [Path(p).name for p in written],
            "labelled": len(labelled), "notes": notes}
