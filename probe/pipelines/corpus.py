"""Corpus analyses, one pipeline each, shared by the CLI, the report and the app.

=========================  ====================================  ==================
function                   options                               result
=========================  ====================================  ==================
:func:`corpus_run`         :class:`~probe.corpus.RunOptions`      :class:`CorpusRunResult`
:func:`corpus_dissect`     :class:`~probe.corpus.DissectOptions`  :class:`CorpusDissection`
:func:`corpus_probe`       :class:`~probe.corpus.ProbeOptions`    :class:`CorpusProbing`
:func:`corpus_map`         :class:`~probe.corpus.MapOptions`      :class:`CorpusMap`
=========================  ====================================  ==================

The options dataclasses live in :mod:`probe.corpus` and hold the only defaults.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus.dissection import DissectOptions, _swap_in, dissect, write_excerpts
from ..corpus.maps import MapOptions
from ..corpus.maps import corpus_map as _corpus_map
from ..corpus.probing import ProbeOptions, probe_layers
from ..corpus.run import CorpusRun, open_run, run_corpus
from ..corpus.worker import RunOptions
from ._base import Result, jsonable, rounded

__all__ = ["RunOptions", "DissectOptions", "ProbeOptions", "MapOptions", "CorpusRunResult", "CorpusDissection",
           "CorpusProbing", "CorpusMap", "corpus_run", "corpus_dissect", "corpus_probe", "corpus_map"]


def _open(run) -> CorpusRun:
    return run if isinstance(run, CorpusRun) else open_run(run)


@dataclass
class CorpusRunResult(Result):
    """A finished (or resumed) corpus run: its folder and manifest."""

    path: str
    manifest: dict

    def to_json(self) -> dict:
        m = self.manifest
        return jsonable({"run": self.path, "model": m["model"]["ref"], "engine": m["engine"], "workers": m["workers"],
                         "layers": m["layers"], "concepts": m["concepts"], "clips": m["clips"],
                         "clips_this_pass": m["clips_this_pass"], "resumed": m["resumed"], "seconds": m["seconds"],
                         "clips_per_second": m["clips_per_second"], "layer_info": m["layer_info"],
                         "warnings": self.warnings})


def corpus_run(model, corpus, out, *, options: RunOptions = RunOptions(), progress: bool = False) -> CorpusRunResult:
    """One pass of ``model`` over ``corpus`` into the run folder ``out`` (see :func:`probe.corpus.run_corpus`)."""
    man = run_corpus(model, corpus, out, options=options, progress=progress)
    warnings = []
    if man["clips"]["bad"]:
        warnings.append(f"{man['clips']['bad']} clip(s) skipped as unusable; reasons in corpus.json")
    return CorpusRunResult(path=str(out), manifest=man, warnings=warnings)


@dataclass
class CorpusDissection(Result):
    """Unit × concept alignments, per-unit labels, and where the tables and excerpts were written."""

    pairs: list
    units: list
    summary: dict
    out: str | None = None
    excerpts: list = field(default_factory=list)

    def to_json(self) -> dict:
        labelled = [{k: (rounded(v, 4) if isinstance(v, float) else v) for k, v in u.items()}
                    for u in self.units if u["label"]]
        return jsonable({**self.summary, "labelled_units": labelled, "out": self.out,
                         "excerpts": self.excerpts, "warnings": self.warnings})


def corpus_dissect(run, *, options: DissectOptions = DissectOptions(), out=None, force: bool = False) -> CorpusDissection:
    """Dissect a run and write ``units.parquet``, ``pairs.parquet``, ``dissect.json`` and wav excerpts.

    ``out`` defaults to ``RUN/dissect``; an existing folder is replaced only with ``force``.
    Everything is written to a temporary folder first and renamed into place.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    run = _open(run)
    res = dissect(run, options=options)
    dest = Path(out) if out is not None else run.path / "dissect"
    if dest.exists() and not force:
        from ..corpus.inputs import CorpusError

        raise CorpusError(f"{dest} exists; pass --force to replace it or choose another --out")
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:6]}")
    tmp.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(res["pairs"]), tmp / "pairs.parquet")
    pq.write_table(pa.Table.from_pylist(res["units"]), tmp / "units.parquet")
    labelled = [u for u in res["units"] if u["label"]]
    files = []
    if options.excerpts:
        files = write_excerpts(run, labelled, tmp / "excerpts", k=options.excerpts, seconds=options.excerpt_seconds)
    (tmp / "dissect.json").write_text(json.dumps(jsonable({"summary": res["summary"], "units": res["units"]}), indent=1))
    _swap_in(tmp, dest, force=force)
    files = [str(dest / Path(f).relative_to(tmp)) for f in files]
    warnings = [] if labelled else ["no unit beats the nulls; nothing labelled"]
    return CorpusDissection(pairs=res["pairs"], units=res["units"], summary=res["summary"], out=str(dest),
                            excerpts=files, warnings=warnings)


@dataclass
class CorpusProbing(Result):
    """Probe scores per layer beside control task, random-init and chance, plus CKA."""

    result: dict

    def to_json(self) -> dict:
        r = self.result
        rows = [{k: (rounded(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in r["layers"]]
        return jsonable({**{k: v for k, v in r.items() if k != "layers"}, "layers": rows, "warnings": self.warnings})

    def figure(self):
        from ..corpus.figures import probe_figure

        return probe_figure(self.result)

    def cka_figure(self):
        from ..corpus.figures import cka_figure

        return cka_figure(self.result)


def corpus_probe(run, *, options: ProbeOptions = ProbeOptions()) -> CorpusProbing:
    """Layer-wise linear probes of a run (see :func:`probe.corpus.probe_layers`)."""
    res = probe_layers(_open(run), options=options)
    warnings = []
    for row in res["layers"]:
        if "control" in row and row["control"] > row["chance"] + 0.2 * (1 - row["chance"]):
            warnings.append(f"{row['layer']}: the control task scores {row['control']:.2f}, well above chance; "
                            "the probe may memorise (raise regularisation)")
    return CorpusProbing(result=res, warnings=warnings)


@dataclass
class CorpusMap(Result):
    """A 2-D map of the corpus's clips with clusters scored against labels."""

    result: dict

    def to_json(self) -> dict:
        r = self.result
        return jsonable({"layer": r["layer"], "variant": r["variant"], "projection": r["projection"],
                         "pooling": r["pooling"], "n_clips": len(r["clip_ids"]), "n_clusters": r["n_clusters"],
                         "ari": rounded(r["ari"], 4), "nmi": rounded(r["nmi"], 4),
                         "explained_variance": r["explained_variance"], "warnings": self.warnings})

    def figure(self, color: str = "label"):
        from ..corpus.figures import map_figure

        return map_figure(self.result, color=color)


def corpus_map(run, *, options: MapOptions = MapOptions()) -> CorpusMap:
    """Map a run's clips (pooled features) to 2-D and score k-means clusters vs labels."""
    res = _corpus_map(_open(run), options=options)
    warnings = [] if res["ari"] is not None else ["no clip labels in the corpus: clusters are not scored"]
    return CorpusMap(result=res, warnings=warnings)
