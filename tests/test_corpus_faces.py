"""The corpus run's faces: the app's Corpus page, the ``--allow-runs`` boundary and the offline HTML report.

The run is the planted synthetic model over a few event clips: by construction unit 3 of
``units`` follows onsets and unit 7 the 1–2 kHz band energy, so those labels must reach the
page's table and the report.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from probe.corpus import DissectOptions, RunOptions
from probe.corpus.synthetic import make_event_corpus, planted_spec
from probe.pipelines.corpus import corpus_dissect, corpus_run

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
TIMEOUT = 120
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import policy  # noqa: E402
from apps.policy import ENV_RUNS, Policy, check_run_ref  # noqa: E402
from probe.errors import SpecError  # noqa: E402

OPTS = RunOptions(layers=("units", "code"), concepts=("loudness", "onset", "bands", "flatness"), batch_size=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``allowed/run`` (dissected) and ``outside/run``, the same tiny run of 8 one-second clips."""
    root = tmp_path_factory.mktemp("faces")
    corpus = make_event_corpus(root / "clips", n_clips=8, seconds=1.0, manifest=True)
    corpus_run(planted_spec, corpus, root / "allowed" / "run", options=OPTS)
    corpus_dissect(root / "allowed" / "run", options=DissectOptions(permutations=200))
    corpus_run(planted_spec, corpus, root / "outside" / "run", options=OPTS)
    return (root / "allowed").resolve(), (root / "outside").resolve()


@pytest.fixture
def allowed(runs, monkeypatch):
    monkeypatch.setenv(ENV_RUNS, str(runs[0]))
    return runs


def _page(**state) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    at.switch_page("views/corpus.py").run()
    return at


def test_policy_offers_runs_only_under_allowed_folders(allowed):
    inside, outside = allowed
    assert policy.allowed_runs() == [str(inside / "run")]
    assert check_run_ref(str(inside / "run")) == str(inside / "run")
    assert check_run_ref("run") == str(inside / "run")  # relative names are taken inside the allowed folders
    msg = "is not a corpus run this server offers: pick a run in the folders this server allows"
    for bad in (str(outside / "run"), str(inside / "run" / ".." / ".." / "outside" / "run"), "/etc", str(inside),
                str(inside / "missing")):
        with pytest.raises(SpecError, match=re.escape(msg)):
            check_run_ref(bad)
    with pytest.raises(SpecError, match="--allow-runs DIR"):
        check_run_ref(str(inside / "run"), Policy())


def test_page_table_lists_the_planted_units_and_a_unit_plays_its_excerpts(allowed):
    at = _page()
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    labels = {(r.layer, int(r.unit)): r.label for r in table.itertuples() if isinstance(r.label, str) and r.label}
    assert labels[("units", 3)] == "onset" and labels[("units", 7)] == "band_1000_2000"
    assert not any(la == "units" and u in (0, 1, 2, 4, 5, 6, 8, 10, 11) for la, u in labels)  # noise units unlabelled
    from probe.report import load_dissection

    saved = load_dissection(allowed[0] / "run", compute=False).summary["labels"]
    assert {f"{la}:{u}": v for (la, u), v in labels.items()} == saved  # the page shows what the pipeline wrote
    scores = [s for s in table["score"] if s == s]
    assert scores == sorted(scores, reverse=True)  # labelled units first, highest concept score first
    unit = at.selectbox(key="w_corpus_unit")
    pick = next(o for o in unit.options if o.startswith("units:7 "))
    unit.set_value(pick).run()
    assert not at.exception
    audio = at.get("audio")
    assert len(audio) == 3  # the unit's top-3 excerpts, cut from the clip files
    from probe.report import unit_excerpts

    items = unit_excerpts(allowed[0] / "run", "units", 7, k=3)
    assert [len(y) for _, y, _ in items] == [16000] * 3  # one second each, inside the clip
    figs = at.get("plotly_chart")
    assert any("units unit 7" in json.loads(f.proto.spec)["layout"]["title"]["text"] for f in figs)


def test_page_probe_and_map(allowed):
    at = _page()
    at.selectbox(key="w_corpus_label").set_value("event")
    at.button(key="w_corpus_probe").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    titles = [json.loads(f.proto.spec)["layout"]["title"]["text"] for f in at.get("plotly_chart")]
    assert any(t.startswith("Linear probe for 'event'") for t in titles)
    assert any(t.startswith("code (trained, PCA)") for t in titles)  # the corpus map of the last layer


def test_page_refuses_a_forged_run_outside_the_allowed_folders(allowed):
    inside, outside = allowed
    at = _page(probe_corpus_run=str(outside / "run"))
    assert not at.exception
    assert [e.value for e in at.error] == [f"{str(outside / 'run')!r} is not a corpus run this server offers: pick a "
                                           "run in the folders this server allows"]
    assert not at.get("audio") and not at.get("plotly_chart")


def test_page_without_allowed_runs_says_how_to_add_them(runs, monkeypatch):
    monkeypatch.delenv(ENV_RUNS, raising=False)
    at = _page()
    assert not at.exception
    assert any("--allow-runs DIR" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_cli_app_allow_runs_reaches_the_app(probe_exe, runs, tmp_path):
    out = subprocess.run([probe_exe, "app", "--allow-runs", str(runs[0]), "--address", "0.0.0.0", "--dry-run", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["env"][ENV_RUNS] == str(runs[0])
    assert f"browse the corpus runs under {runs[0]}" in out.stderr  # binding beyond localhost says so
    bad = subprocess.run([probe_exe, "app", "--allow-runs", str(tmp_path / "nope"), "--dry-run"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--allow-runs" in bad.stderr


def test_report_is_offline_html_with_the_planted_labels(probe_exe, runs, tmp_path):
    out = subprocess.run([probe_exe, "corpus", "report", str(runs[0] / "run"), "--out", str(tmp_path / "rep"),
                          "--label", "event", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    index = Path(res["report"])
    assert index.is_file() and res["labelled"] >= 2 and not res["notes"]
    assert set(res["figures"]) == {"dissection_units.html", "dissection_code.html", "probe.html", "map.html"}
    text = index.read_text()
    assert "onset" in text and "band_1000_2000" in text
    assert text.count("<audio") >= 6  # top-3 excerpts of at least the two planted units
    for page in [index] + [index.parent / f for f in res["figures"]]:
        srcs = re.findall(r"<(?:script|iframe)[^>]*\bsrc=\"([^\"]+)\"", page.read_text())
        assert not [s for s in srcs if s.lower().startswith(("http:", "https:", "//"))], page
    assert (index.parent / "plotly.min.js").stat().st_size > 1_000_000
    again = subprocess.run([probe_exe, "corpus", "report", str(runs[0] / "run"), "--out", str(runs[0])],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().count("\n") == 0  # a user's folder is never overwritten
