"""The app's boundary: a web user never makes the server import code or read a file it was not allowed to.

Attacks as a web user can send them — a ``?model=`` / ``?audio=`` link, a forged session
value, an upload whose header promises gigabytes — against the policy the person starting
the server set (``probe app --allow-models DIR --allow-audio DIR``). Each test asserts the
exact outcome: the message, that the payload never ran, that nothing was decoded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from streamlit.testing.v1 import AppTest

from tests._app_fixtures import tone_and_noise, wav_bytes, write_tiny_spec

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "apps" / "probe_app.py"
TIMEOUT = 90
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import policy  # noqa: E402
from apps.policy import ENV_AUDIO, ENV_MODELS, ENV_RUNS, Policy, check_audio_ref, check_model_ref  # noqa: E402
from apps.ui import AUDIO_KEY, MODEL_KEY  # noqa: E402
from probe.errors import AudioError, SpecError  # noqa: E402


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """An allowed model folder, an allowed audio folder and a folder outside both (all resolved)."""
    allowed_models, allowed_audio, outside = (tmp_path / d for d in ("models", "audio", "outside"))
    for d in (allowed_models, allowed_audio, outside):
        d.mkdir()
    monkeypatch.setenv(ENV_MODELS, str(allowed_models))
    monkeypatch.setenv(ENV_AUDIO, str(allowed_audio))
    return allowed_models.resolve(), allowed_audio.resolve(), outside.resolve()


def _os_system_spec(folder: Path, marker: Path) -> Path:
    """A spec whose factory is ``os:system`` with a command that would leave ``marker`` behind."""
    spec = folder / "evil.toml"
    spec.write_text(f'[model]\nfactory = "os:system"\n[model.kwargs]\ncommand = "touch {marker}"\n'
                    '[input]\nkind = "waveform"\nsample_rate = 8000\n[output]\nkind = "features"\n')
    return spec


def _app(**query) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    return at


def _messages(at) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]


# ---- models ---------------------------------------------------------------------------------

def test_os_system_spec_is_refused_inside_and_outside_the_allowed_folder(roots):
    allowed, _, outside = roots
    marker = outside / "pwned"
    for folder in (allowed, outside):
        spec = _os_system_spec(folder, marker)
        with pytest.raises(SpecError) as err:
            check_model_ref(str(spec))
        if folder == allowed:
            assert "its factory 'os:system' is not a module file beside the spec" in str(err.value)
        else:
            assert str(err.value).startswith(f"{str(spec)!r} is not a model this server offers")
        from apps.state import load_shared_model

        with pytest.raises(SpecError):
            load_shared_model(str(spec))
        # the same through a link, on the Overview and on a page that loads the model itself
        for page in (None, "views/filters.py"):
            at = _app(model=str(spec))
            if page:
                at.switch_page(page)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert any(m.startswith("Link ignored: ") and "os:system" not in m.split(":", 1)[0] for m in at.error
                       .values), _messages(at)
            assert at.session_state[MODEL_KEY] != str(spec)
    assert not marker.exists(), "the os:system factory ran"


def test_a_local_factory_outside_the_allowed_folders_never_runs(roots):
    allowed, _, outside = roots
    marker = outside / "ran"
    (outside / "payload.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                        "def build():\n    raise SystemExit\n")
    spec = outside / "payload.toml"
    spec.write_text('[model]\nfactory = "payload:build"\n[input]\nkind = "waveform"\nsample_rate = 8000\n')
    # a symbolic link inside the allowed folder does not carry the spec in
    (allowed / "link.toml").symlink_to(spec)
    for ref in (str(spec), str(allowed / "link.toml"), "link.toml", f"{allowed}/../outside/payload.toml"):
        with pytest.raises(SpecError, match="is not a model this server offers"):
            check_model_ref(ref)
        at = _app(model=ref)
        at.run()
        assert not at.exception
    assert not marker.exists(), "code outside the allowed folders ran"
    assert str(spec) not in policy.allowed_spec_files()


def test_allowed_spec_files_load_and_are_listed(roots):
    allowed, _, _ = roots
    spec = write_tiny_spec(allowed / "tiny")
    assert policy.allowed_spec_files() == [str(spec.resolve())]
    assert check_model_ref(str(spec)) == str(spec.resolve())
    assert check_model_ref("tiny/tiny.toml") == str(spec.resolve()), "relative names are taken inside the folder"
    at = _app(model=str(spec))
    at.run()
    assert not at.exception and not at.error, _messages(at)
    assert any("tiny_detector" in s.value for s in at.subheader)


def test_existing_and_missing_paths_get_the_same_message(roots):
    """/etc/shadow (exists, unreadable or not) and a path that does not exist are refused alike."""
    _, _, outside = roots
    secret = outside / "secret.wav"
    secret.write_bytes(wav_bytes(tone_and_noise(0.2)))
    for check, exc in ((check_model_ref, SpecError), (check_audio_ref, AudioError)):
        messages = {}
        for path in ("/etc/shadow", "/no/such/file", "/etc/passwd", str(secret), str(outside / "missing.wav")):
            with pytest.raises(exc) as err:
                check(path)
            messages[path] = str(err.value).replace(repr(path), "PATH")
        assert len(set(messages.values())) == 1, messages
        assert "/etc" not in next(iter(messages.values()))


def test_model_links_never_reveal_paths(roots):
    pages = {}
    for path in ("/etc/shadow", "/no/such/file.toml"):
        at = _app(model=path)
        at.run()
        assert not at.exception
        pages[path] = [m.replace(repr(path), "PATH") for m in at.error.values]
        assert pages[path] and pages[path][0].startswith("Link ignored: PATH is not a model this server offers")
    assert pages["/etc/shadow"] == pages["/no/such/file.toml"]


def test_audio_only_from_uploads_examples_and_allowed_folders(roots):
    _, audio, outside = roots
    inside = audio / "clip.wav"
    inside.write_bytes(wav_bytes(tone_and_noise(0.5)))
    (audio / "sub").mkdir()
    (audio / "sub" / "escape.wav").symlink_to(outside / "secret.wav")
    (outside / "secret.wav").write_bytes(wav_bytes(tone_and_noise(0.5)))
    (audio / "passwd.wav").symlink_to("/etc/passwd")
    assert check_audio_ref(str(inside)) == str(inside)
    assert check_audio_ref("clip.wav") == str(inside)
    assert policy.allowed_audio_files() == [str(inside)]
    for ref in (str(audio / "sub" / "escape.wav"), str(audio / "passwd.wav"), f"{audio}/../outside/secret.wav",
                "../outside/secret.wav", str(outside / "secret.wav"), "/etc/shadow", "-", "example:nope:0",
                "example:crnn_sed:-1", "example:crnn_sed:99", "example:crnn_sed:0/../x"):
        with pytest.raises(AudioError, match="is not audio this server offers"):
            check_audio_ref(ref)
    assert check_audio_ref("example:crnn_sed:3") == "example:crnn_sed:3"


def test_forged_audio_in_the_session_is_refused_on_every_page(roots):
    from apps.state import load_example_ref

    with pytest.raises(AudioError, match="is not audio this server offers"):
        load_example_ref("/etc/passwd", 16000)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = "zoo:crnn_sed"
    at.session_state[AUDIO_KEY] = "/etc/passwd"
    at.switch_page("views/activations.py").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Cannot load this audio: '/etc/passwd' is not audio this server offers: "
                                           "pick an example, an upload or a file in the folders this server allows"]
    assert not at.get("plotly_chart")


def test_no_allowed_folders_means_zoo_and_uploads_only(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_MODELS, raising=False)
    monkeypatch.delenv(ENV_AUDIO, raising=False)
    spec = write_tiny_spec(tmp_path / "tiny")
    with pytest.raises(SpecError, match=r"this server allows no spec folders.*--allow-models DIR"):
        check_model_ref(str(spec))
    assert policy.current_policy() == Policy()
    at = _app(model="zoo:crnn_sed")
    at.run()
    assert not at.exception and not at.error, _messages(at)
    assert at.radio(key="w_model_source").options == ["Zoo"]
    assert "Server file" not in at.radio(key="w_audio_kind").options


def test_a_huge_file_in_an_allowed_folder_is_not_read(roots):
    allowed, _, _ = roots
    big = allowed / "big.toml"
    with open(big, "wb") as f:  # sparse: 600 MB claimed, nothing written
        f.truncate(600 * 2 ** 20)
    with pytest.raises(SpecError, match="larger than 256 KB: not a model spec"):
        check_model_ref(str(big))


# ---- uploads --------------------------------------------------------------------------------

def _flac_claiming(seconds: float, *, channels: int = 8, rate: int = 384000) -> bytes:
    """A short FLAC whose STREAMINFO header is patched to claim ``seconds`` (what the attack file says)."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros((rate // 10, channels), np.int16), rate, format="FLAC", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    # bytes 18..25: 20 bits rate, 3 bits channels-1, 5 bits bps-1, 36 bits total samples
    field = int.from_bytes(data[18:26], "big")
    field = (field & ~((1 << 36) - 1)) | int(seconds * rate)
    data[18:26] = field.to_bytes(8, "big")
    return bytes(data)


def test_many_channel_high_rate_flac_is_refused_before_decoding(roots, monkeypatch):
    data = _flac_claiming(119.0)
    with sf.SoundFile(io.BytesIO(data)) as f:
        assert (f.channels, f.samplerate, f.frames) == (8, 384000, 119 * 384000)

    def no_decode(*a, **k):
        raise AssertionError("samples were decoded")

    monkeypatch.setattr(sf.SoundFile, "read", no_decode)
    monkeypatch.setattr(sf, "read", no_decode)
    from apps.uploads import load_upload

    for crop in (False, True):
        with pytest.raises(AudioError) as err:
            load_upload("silence.flac", data, 16000, crop=crop)
        n = 8 * 384000 * (119 if not crop else 119)
        assert str(err.value).startswith(f"'silence.flac' would decode to {n:,} samples (8 channels × 384000 Hz × "
                                         "119.0 s); the app decodes at most 11,520,000")
    # in the app: one error line, nothing drawn
    allowed, _, _ = roots
    spec = write_tiny_spec(allowed / "tiny")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state[MODEL_KEY] = str(spec)
    at.run()
    at.file_uploader[0].set_value(("silence.flac", data, "audio/flac")).run()
    assert not at.exception
    assert [e.value for e in at.error][0].startswith("Cannot use this file: 'silence.flac' would decode to")
    assert not at.get("plotly_chart")


def test_random_bytes_are_not_an_audio_file():
    from apps.uploads import load_upload

    data = np.random.default_rng(1).integers(0, 256, 10000, dtype=np.uint8).tobytes()
    with pytest.raises(AudioError, match=r"^'noise.wav' is not an audio file soundfile can read"):
        load_upload("noise.wav", data, 8000)


# ---- the command line -----------------------------------------------------------------------

def _dry(probe_exe, *args, env=None):
    return subprocess.run([probe_exe, "app", "--dry-run", "--json", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_cli_binding_beyond_localhost_warns_what_is_exposed(probe_exe, tmp_path):
    models, audio = tmp_path / "m", tmp_path / "a"
    models.mkdir(), audio.mkdir()
    r = _dry(probe_exe, "--address", "0.0.0.0", "--allow-models", str(models), "--allow-audio", str(audio))
    assert r.returncode == 0, r.stderr
    warning = r.stderr.strip()
    assert warning.startswith("probe app: WARNING: binding to 0.0.0.0 makes the app reachable from other machines")
    assert str(models.resolve()) in warning and "factory code runs on this machine" in warning
    assert str(audio.resolve()) in warning and "port 8501" in warning
    out = json.loads(r.stdout)
    assert out["exposed"] and out["env"] == {ENV_MODELS: str(models.resolve()), ENV_AUDIO: str(audio.resolve()),
                                   ENV_RUNS: ""}
    local = _dry(probe_exe)
    assert local.returncode == 0 and "WARNING" not in local.stderr
    assert json.loads(local.stdout)["env"] == {ENV_MODELS: "", ENV_AUDIO: "", ENV_RUNS: ""}, "nothing allowed unless given"


def test_cli_allowed_folders_must_exist(probe_exe, tmp_path):
    r = _dry(probe_exe, "--allow-models", str(tmp_path / "nope"))
    assert r.returncode == 2 and r.stderr.strip() == f"probe app: error: --allow-models {tmp_path / 'nope'}: no such folder"


def test_cli_upload_limit_matches_the_app(probe_exe):
    from probe.cli.app import ENV_AUDIO as CLI_AUDIO, ENV_MODELS as CLI_MODELS, MAX_UPLOAD_MB, command

    assert (CLI_MODELS, CLI_AUDIO, MAX_UPLOAD_MB) == (ENV_MODELS, ENV_AUDIO, policy.MAX_UPLOAD_MB)
    cmd = command(8501, "localhost", APP)
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(policy.MAX_UPLOAD_MB)
    assert cmd[cmd.index("--browser.gatherUsageStats") + 1] == "false"
    # the upload limit covers a 16-bit file at the decoded-size limit (the app crops longer ones)
    assert policy.MAX_DECODED_SAMPLES * 2 <= policy.MAX_UPLOAD_MB * 2 ** 20
