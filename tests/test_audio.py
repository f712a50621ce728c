import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from probe import load_audio, validate_audio
from probe.errors import AudioError, ProbeError


def test_array_resampled_to_requested_rate(tone):
    y, sr = tone
    out, rate = load_audio(y, 8000, source_sr=sr)
    assert rate == 8000 and out.dtype == np.float32 and out.shape == (8000,)
    # the 440 Hz tone survives resampling: its peak bin is still at 440 Hz
    spec = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spec) * 8000 / len(out) - 440) < 2


def test_file_roundtrip_and_multichannel(tmp_path, tone):
    y, sr = tone
    stereo = np.stack([y, -0.5 * y], axis=1)
    p = tmp_path / "st.wav"
    sf.write(p, stereo, sr, subtype="FLOAT")
    mix, _ = load_audio(p)
    np.testing.assert_allclose(mix, 0.25 * y, atol=1e-6)
    right, _ = load_audio(p, channel=1)
    np.testing.assert_allclose(right, -0.5 * y, atol=1e-6)
    with pytest.raises(AudioError, match="channel=5 out of range for audio with 2 channels"):
        load_audio(p, channel=5)


@pytest.mark.parametrize("dtype,scale,offset", [(np.int16, 32768, 0), (np.int32, 2**31, 0), (np.uint8, 128, 128)])
def test_integer_pcm_scaled(dtype, scale, offset):
    x = np.array([0, scale // 2, -(scale // 2)], dtype=np.int64) + offset
    y, _ = load_audio(x.astype(dtype), source_sr=8000)
    np.testing.assert_allclose(y, [0.0, 0.5, -0.5], atol=1e-6)


def test_int16_wav_file_scaled(tmp_path):
    p = tmp_path / "pcm.wav"
    sf.write(p, np.array([0, 16384, -16384, 0] * 100, dtype=np.int16), 8000, subtype="PCM_16")
    y, sr = load_audio(p)
    assert sr == 8000 and np.isclose(y.max(), 0.5, atol=1e-4) and np.isclose(y.min(), -0.5, atol=1e-4)


def test_missing_file():
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio("/nonexistent/x.wav")


def test_corrupt_header(tmp_path):
    p = tmp_path / "bad.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    with pytest.raises(AudioError, match="cannot decode .*bad.wav"):
        load_audio(p)


def test_empty_file_and_directory(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioError, match="empty \\(0 bytes\\)"):
        load_audio(p)
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_truncated_data_keeps_error_specific(tmp_path, tone):
    y, sr = tone
    p = tmp_path / "t.flac"
    sf.write(p, y, sr)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])  # header intact, frames cut
    with pytest.raises(AudioError):
        load_audio(p)


@pytest.mark.parametrize("y,msg", [
    (np.zeros(0, np.float32), "empty or a single sample"),
    (np.zeros(1, np.float32), "empty or a single sample"),
    (np.array([0.0, np.nan, 0.1], np.float32), "1 non-finite samples .* first at index 1"),
    (np.array([0.0, np.inf], np.float32), "non-finite"),
    (np.zeros((2, 2, 2), np.float32), "1-D or 2-D"),
])
def test_bad_arrays(y, msg):
    with pytest.raises(AudioError, match=msg):
        load_audio(y, source_sr=8000)


def test_too_long_rejected_before_reading(tmp_path):
    p = tmp_path / "long.wav"
    sf.write(p, np.zeros(8000 * 5, np.float32), 8000)
    with pytest.raises(AudioError, match="lasts 5.0 s, above max_seconds=2"):
        load_audio(p, max_seconds=2)
    assert load_audio(p, max_seconds=None)[0].shape == (40000,)


def test_unsupported_rates():
    with pytest.raises(AudioError, match="unsupported sample rate sr=10"):
        load_audio(np.zeros(100, np.float32), 10, source_sr=8000)
    with pytest.raises(AudioError, match="unsupported source sample rate 50"):
        load_audio(np.zeros(100, np.float32), source_sr=50)
    with pytest.raises(AudioError, match="pass source_sr"):
        load_audio(np.zeros(100, np.float32))


def test_validate_rejects_ints_and_is_probe_error():
    with pytest.raises(ProbeError, match="floating point"):
        validate_audio(np.zeros(10, np.int16))
    assert issubclass(AudioError, ValueError)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.integers(2, 400), elements=st.floats(-1, 1, width=32)))
def test_finite_float_arrays_always_load_unchanged(y):
    out, sr = load_audio(y, source_sr=8000)
    assert sr == 8000 and out.dtype == np.float32
    np.testing.assert_array_equal(out, y)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(0, 50), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_any_array_loads_or_raises_audio_error(y):
    try:
        out, _ = load_audio(y, source_sr=8000)
    except AudioError as exc:
        finite = np.isfinite(y).all()
        assert y.size < 2 or not finite or "exceeds the float32 range" in str(exc)
    else:
        assert np.isfinite(out).all() and out.size >= 2


# ---- load-time facts and honest header checks (issue 11) -----------------------------------
@pytest.mark.parametrize("right,expected_db", [("same", 0.0), ("half", 10 * np.log10(0.9)), ("independent", -3.0),
                                               ("inverted", None)])
def test_mixdown_energy_is_reported(tmp_path, rng, right, expected_db):
    left = (0.2 * rng.standard_normal(32000)).astype(np.float32)
    other = {"same": left, "half": 0.5 * left, "independent": (0.2 * rng.standard_normal(32000)).astype(np.float32),
             "inverted": -left}[right]
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, other], 1), 16000, subtype="FLOAT")
    info = {}
    load_audio(p, info=info)
    assert info["channels"] == 2 and info["source_sr"] == 16000
    if expected_db is None:  # exact cancellation: the mix is zero, reported at the floor
        assert info["mixdown_db"] < -200
    else:  # mix energy / mean channel energy: (1+g)^2/4 / ((1+g^2)/2) for right = g * left
        assert info["mixdown_db"] == pytest.approx(expected_db, abs=0.15)


def test_mono_file_reports_no_mixdown(tmp_path, tone):
    y, sr = tone
    sf.write(tmp_path / "m.wav", y, sr)
    info = {}
    load_audio(tmp_path / "m.wav", info=info)
    assert info == {"channels": 1, "source_sr": sr}


def test_streamed_wav_with_open_length_loads(tmp_path, tone):
    """A WAV written while streaming leaves its data length 0xFFFFFFFF: not a lie, it must still load."""
    import struct

    from probe.audio import _wav_claimed_frames

    y, sr = tone
    sf.write(tmp_path / "a.wav", y, sr, subtype="PCM_16")
    raw = bytearray((tmp_path / "a.wav").read_bytes())
    assert raw[36:40] == b"data"
    raw[40:44] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "s.wav").write_bytes(bytes(raw))
    assert _wav_claimed_frames(tmp_path / "s.wav") is None
    assert _wav_claimed_frames(tmp_path / "a.wav") == sr
    out, _ = load_audio(tmp_path / "s.wav")
    assert out.shape == (sr,)


def test_wav_header_with_extra_chunks_is_parsed(tmp_path, tone):
    """A LIST chunk of odd length before the data (word-aligned, as RIFF says) does not confuse the check."""
    import struct

    from probe.audio import _wav_claimed_frames

    y, sr = tone
    sf.write(tmp_path / "a.wav", y, sr, subtype="PCM_16")
    raw = (tmp_path / "a.wav").read_bytes()
    listing = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"  # odd size + pad byte
    body = raw[12:36] + listing + raw[36:]
    (tmp_path / "l.wav").write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    assert _wav_claimed_frames(tmp_path / "l.wav") == sr
    assert load_audio(tmp_path / "l.wav")[0].shape == (sr,)
