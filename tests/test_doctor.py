"""Data sources are found from what the packages install; `probe doctor` says what is missing and how to fix it;
examples ship for machines that cannot build them."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from model_zoo import registry
from model_zoo.data import MissingSourceError, shipped
from model_zoo.data import _sources as SRC


@pytest.fixture(autouse=True)
def fresh_discovery():
    SRC.clear_cache()
    yield
    SRC.clear_cache()


def _fake_dpkg(bin_dir, listing: dict) -> None:
    """A ``dpkg-query`` that answers ``-L PACKAGE`` from ``listing`` and says every listed package is installed."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "dpkg-query"
    script.write_text("#!" + sys.executable + "\nimport json, sys\nL = json.loads(" + repr(json.dumps(listing)) + ")\n"
                      "pkg = sys.argv[-1]\n"
                      "if pkg not in L: sys.exit(1)\n"
                      "if sys.argv[1] == '-L': print('\\n'.join(L[pkg]))\n"
                      "else: print('installed')\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def _voice_tree(root):
    """The layout asterisk-core-sounds-en-wav installs: a voice folder, no `en` link."""
    voice = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    (voice / "digits").mkdir(parents=True)
    for name in ("beep.wav", "hello-world.wav", "digits/1.wav"):
        (voice / name).write_bytes(b"RIFF")
    files = [str(p) for p in sorted(voice.rglob("*"))]
    return voice, [str(root / "usr/share/asterisk/sounds"), str(voice)] + files


def test_asterisk_folder_comes_from_the_package_file_list(tmp_path, monkeypatch):
    voice, files = _voice_tree(tmp_path)
    _fake_dpkg(tmp_path / "bin", {"asterisk-core-sounds-en-wav": files})
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ["PATH"])
    assert SRC.path("asterisk") == voice
    info = SRC.check("asterisk")
    assert info["status"] == "ok" and info["path"] == str(voice) and info["found_by"].startswith("dpkg -L")


def test_without_dpkg_the_voice_folder_is_globbed_not_the_en_link(tmp_path, monkeypatch):
    voice, _ = _voice_tree(tmp_path)
    (voice.parent / "en").symlink_to(voice.name)  # where the recommended package exists, its link is not used
    french = voice.parent / "fr_FR_f_Sylvie"  # another language's prompts are never taken for English
    french.mkdir()
    (french / "beep.wav").write_bytes(b"RIFF")
    assert SRC.SOURCES["asterisk"].places[-1] == "/usr/share/asterisk/sounds/en*/beep.wav"  # the real pattern
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no dpkg-query at all
    places = (str(tmp_path / "usr/share/asterisk/sounds/en*/beep.wav"),)
    monkeypatch.setitem(SRC.SOURCES, "asterisk", dataclasses.replace(SRC.SOURCES["asterisk"], places=places))
    assert SRC.path("asterisk") == voice.resolve()
    (voice.parent / "en").unlink()
    SRC.clear_cache()
    assert SRC.path("asterisk") == voice.resolve()


def test_this_machine_uses_the_voice_folder_the_package_installs():
    """Set-up installs the packages with --no-install-recommends: no `en` link must be needed."""
    p = SRC.require("asterisk")
    assert (p / "beep.wav").is_file() and any(p.glob("*.wav"))
    listed = subprocess.run(["dpkg-query", "-L", "asterisk-core-sounds-en-wav"], capture_output=True, text=True).stdout
    assert str(p / "beep.wav") in listed.splitlines()


def test_a_missing_source_names_the_package_and_a_working_command(monkeypatch):
    src = dataclasses.replace(SRC.SOURCES["wesnoth"], package="probe-test-no-such-package", places=(),
                              fix="apt-get install -y probe-test-no-such-package")
    monkeypatch.setitem(SRC.SOURCES, "wesnoth", src)
    with pytest.raises(MissingSourceError, match=r"'probe-test-no-such-package'; install it with: "
                                                 r"apt-get install -y probe-test-no-such-package"):
        SRC.require("wesnoth")
    info = SRC.check("wesnoth")
    assert info["status"] == "missing" and info["fix"] == "apt-get install -y probe-test-no-such-package"


def test_missing_tinysoundfont_advice_is_the_no_deps_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # import fails as if not installed
    with pytest.raises(MissingSourceError, match=r"pip install --no-deps 'tinysoundfont>=0.3.6'"):
        SRC.require("tinysoundfont")


# ---- probe doctor ------------------------------------------------------------------------------------------------
def test_doctor_json_lists_every_source_with_path_and_fix(probe_exe):
    r = subprocess.run([probe_exe, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(r.stdout)
    assert r.returncode == 0, (report["missing_needed"], r.stderr)  # .ci/setup installs everything the tests need
    data = {c["name"]: c for c in report["checks"] if c["group"] == "data"}
    assert set(data) == set(SRC.SOURCES)
    for c in data.values():
        assert c["status"] == "ok" and {"path", "fix", "disables", "version"} <= set(c)
    assert data["asterisk"]["path"].endswith("/en_US_f_Allison")
    names = {c["name"] for c in report["checks"]}
    assert {"chromium", "torch", "cuda", "transformers", "onnx2torch", "ray", "playwright", "checkpoints"} <= names


def test_doctor_exits_2_and_names_the_fix_when_a_source_is_missing(probe_exe, tmp_path):
    env = {**os.environ, "PROBE_SOURCE_WESNOTH": str(tmp_path / "nowhere")}
    r = subprocess.run([probe_exe, "doctor", "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["probe doctor: error: missing: wesnoth (fix commands in the report above)"]
    report = json.loads(r.stdout)
    wes = next(c for c in report["checks"] if c["name"] == "wesnoth")
    assert report["ok"] is False and report["missing_needed"] == ["wesnoth"]
    assert wes["status"] == "missing" and wes["path"] == str(tmp_path / "nowhere")
    assert "unset PROBE_SOURCE_WESNOTH" in wes["fix"] and "apt-get install -y wesnoth-1.16-data" in wes["fix"]
    assert "crnn_sed" in wes["disables"]
    text = subprocess.run([probe_exe, "doctor"], capture_output=True, text=True, timeout=120, env=env)
    assert text.returncode == 2 and "MISSING wesnoth" in text.stdout and "fix: unset PROBE_SOURCE_WESNOTH" in text.stdout


# ---- shipped examples --------------------------------------------------------------------------------------------
def test_shipped_example_matches_a_fresh_build_and_stands_in_for_it(monkeypatch, tmp_path):
    built = registry.load_example("dc_blstm", 0)  # from the data packages (or their build cache)
    assert "shipped" not in built.info
    monkeypatch.setenv("PROBE_DATA_BUILD", str(tmp_path / "empty_cache"))
    monkeypatch.setitem(SRC.OVERRIDES, "soundfont", tmp_path / "no.sf2")  # as on a pip-only machine
    copy = registry.load_example("dc_blstm", 0)
    assert copy.info["shipped"]["format"] == "FLAC PCM_16" and copy.name == "example:dc_blstm:0"
    assert copy.sr == built.sr and copy.source_names == built.source_names
    assert np.max(np.abs(copy.sources - built.sources)) <= 1 / 32768 + 1e-9  # one 16-bit step at most
    assert np.array_equal(copy.y, copy.sources.sum(0))  # the mixture is still exactly the sum of its sources
    assert np.max(np.abs(copy.y - built.y)) <= 2 / 32768 + 1e-9
    assert {k: v for k, v in copy.info.items() if k != "shipped"} == json.loads(json.dumps(built.info))
    assert not (tmp_path / "empty_cache").exists() or not any((tmp_path / "empty_cache").glob("instruments_*"))


def test_every_listed_shipped_example_is_stored_and_permissive():
    assert "dc_blstm:0" in shipped.available()  # the app's default model and clip
    for key in shipped.available():
        name, i = key.split(":")
        ex = shipped.load(name, int(i))
        assert ex.info["licence"] in shipped.SHIPPABLE_LICENCES
    size = sum(p.stat().st_size for p in shipped.FOLDER.iterdir())
    assert size < 400 * 1024


def test_an_example_that_does_not_ship_names_the_missing_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_DATA_BUILD", str(tmp_path / "empty_cache"))
    monkeypatch.setitem(SRC.OVERRIDES, "soundfont", tmp_path / "no.sf2")
    with pytest.raises(MissingSourceError, match=r"example:dc_blstm:1 is built from data packages that are missing "
                                                 r"here \(example:dc_blstm:0 ships with probe.*fluid-soundfont-gm"):
        registry.load_example("dc_blstm", 1)
