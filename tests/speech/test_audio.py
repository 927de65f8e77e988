"""Audio front end: STFT round trip, compression inverse, padding, resampling, file I/O errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.core.errors import InputError
from polydiff.speech import audio as A


def test_presets_match_the_papers():
    c16, c48 = A.preset("16k"), A.preset("48k")
    assert (c16.n_fft, c16.hop_length, c16.alpha, c16.beta) == (510, 128, 0.5, 0.15)
    assert c16.n_freqs == 256
    assert (c48.sample_rate, c48.n_fft, c48.hop_length, c48.alpha, c48.beta) == (
        48000,
        1534,
        384,
        0.667,
        0.065,
    )
    assert A.preset("16k_storm").beta == 0.33
    with pytest.raises(ValueError, match="preset"):
        A.preset("22k")
    with pytest.raises(ValueError, match="alpha"):
        A.SpecConfig(alpha=0.0)


def test_stft_shape_and_window_is_periodic_hann():
    cfg = A.preset("16k")
    x = torch.randn(2, 3, 4000, dtype=torch.float64)
    X = A.stft(x, cfg)
    assert X.shape == (2, 3, 256, A.num_frames(4000, cfg))
    # A constant 1 signal: the DC bin of an interior frame is sum(periodic Hann) = n_fft / 2.
    ones = torch.ones(4000, dtype=torch.float64)
    assert A.stft(ones, cfg)[0, 10].real.item() == pytest.approx(cfg.n_fft / 2, rel=1e-12)


@pytest.mark.parametrize("name", ["16k", "48k"])
@pytest.mark.parametrize("length", [768, 1000, 32640, 32641])
def test_spec_round_trip_is_exact(name, length):
    cfg = A.preset(name)
    x = torch.randn(2, length, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    S = A.to_spec(x, cfg)
    S_pad, n = A.pad_frames(S, cfg.frame_multiple)
    assert S_pad.shape[-1] % 64 == 0 and S_pad.shape[-1] - n < 64
    assert torch.equal(A.crop_frames(S_pad, n), S)
    y = A.to_audio(A.crop_frames(S_pad, n), cfg, length)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-10)


def test_stft_rejects_too_short_signals():
    with pytest.raises(ValueError, match="too short"):
        A.stft(torch.zeros(255), A.preset("16k"))
    assert A.stft(torch.zeros(256), A.preset("16k")).shape == (256, 3)


def test_compression_formula_and_inverse():
    X = torch.complex(torch.randn(100, dtype=torch.float64), torch.randn(100, dtype=torch.float64))
    S = A.compress(X, 0.5, 0.15)
    np.testing.assert_allclose(S.abs(), 0.15 * X.abs().sqrt())
    np.testing.assert_allclose(torch.angle(S), torch.angle(X))
    np.testing.assert_allclose(A.decompress(S, 0.5, 0.15), X)
    zero = torch.zeros(3, dtype=torch.complex128)
    assert torch.equal(A.decompress(A.compress(zero, 0.5, 0.15), 0.5, 0.15), zero)


def test_pad_frames_is_noop_on_multiples():
    S = torch.zeros(1, 256, 128, dtype=torch.complex64)
    S_pad, n = A.pad_frames(S, 64)
    assert S_pad.shape == S.shape and n == 128


def test_resample_preserves_a_sine_and_length():
    sr_in, sr_out = 44100, 16000
    t = np.arange(sr_in) / sr_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    y = A.resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape == (sr_out,)
    ref = np.sin(2 * np.pi * 440 * np.arange(sr_out) / sr_out)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 1e-3
    assert A.resample(x, 16000, 16000) is x
    with pytest.raises(ValueError, match="sample rates"):
        A.resample(x, 0, 16000)


def test_load_resamples_and_applies_channel_policy(tmp_path):
    rng = np.random.default_rng(0)
    stereo = 0.3 * rng.standard_normal((48000, 2)).astype(np.float32)
    path = tmp_path / "st.wav"
    sf.write(path, stereo, 48000, "FLOAT")
    mix, sr = A.load_audio(path)
    assert sr == 48000 and mix.shape == (48000,)
    np.testing.assert_allclose(mix, stereo.mean(1), atol=1e-7)
    first, _ = A.load_audio(path, channels="first")
    np.testing.assert_array_equal(first, stereo[:, 0])
    both, sr = A.load_audio(path, sample_rate=16000, channels="all")
    assert sr == 16000 and both.shape == (2, 16000)
    with pytest.raises(ValueError, match="channels"):
        A.load_audio(path, channels="left")


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.wav"):
        A.load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav file at all")
    with pytest.raises(InputError, match=r"junk\.wav: not a readable audio file"):
        A.load_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match=r"empty\.wav: empty"):
        A.load_audio(empty)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="silence"):
        A.load_audio(silent)
    assert A.load_audio(silent, allow_silence=True)[0].shape == (100,)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2], np.float32), 16000, "FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        A.load_audio(nan)


def test_damaged_and_non_regular_files_are_refused_by_name(tmp_path):
    """A WAV cut short (its header declares more samples than it holds: libsndfile would read
    the rest as missing), a FIFO (opening it would wait for a writer) and a folder."""
    good = tmp_path / "good.wav"
    sf.write(good, np.full(8000, 0.1, np.float32), 8000)
    data = good.read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.wav: truncated: its header declares 16000 bytes"):
        A.load_audio(tmp_path / "cut.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    (tmp_path / "dir.wav").mkdir()
    for name in ("fifo.wav", "dir.wav"):
        with pytest.raises(InputError, match=rf"{name}: not a regular file"):
            A.load_audio(tmp_path / name)
    assert A.load_audio(good)[0].shape == (8000,)


def test_load_warns_on_clipping(tmp_path):
    x = np.clip(3 * np.sin(np.linspace(0, 100, 8000)), -1, 1).astype(np.float32)
    path = tmp_path / "clipped.wav"
    sf.write(path, x, 16000)
    with pytest.warns(UserWarning, match="full scale"):
        A.load_audio(path)


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_save_round_trip_and_atomic(tmp_path, ext):
    x = (0.5 * np.sin(np.linspace(0, 300, 16000))).astype(np.float32)
    out = A.save_audio(tmp_path / f"sub/out{ext}", torch.from_numpy(x), 16000)
    assert out.exists() and sorted(p.name for p in out.parent.iterdir()) == [f"out{ext}"]
    y, sr = A.load_audio(out)
    assert sr == 16000
    np.testing.assert_allclose(y, x, atol=1 / 2**15)
    st = np.stack([x, -x])
    A.save_audio(tmp_path / f"st{ext}", st, 16000)
    assert A.load_audio(tmp_path / f"st{ext}", channels="all")[0].shape == (2, 16000)


def test_save_refuses_nan_and_handles_clipping(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        A.save_audio(tmp_path / "n.wav", np.array([0.0, np.nan]), 16000)
    assert not list(tmp_path.iterdir())
    loud = np.array([0.0, 2.0, -1.0, 0.5], np.float32)
    with pytest.raises(ValueError, match="peak"):
        A.save_audio(tmp_path / "e.wav", loud, 16000, on_clip="error")
    with pytest.warns(UserWarning, match="rescaled"):
        A.save_audio(tmp_path / "s.wav", loud, 16000)
    y, _ = A.load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(y, loud * 0.999 / 2, atol=1 / 2**15)
    A.save_audio(tmp_path / "f.wav", loud, 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match="full scale"):
        np.testing.assert_array_equal(A.load_audio(tmp_path / "f.wav")[0], loud)
    with pytest.raises(ValueError, match="extension"):
        A.save_audio(tmp_path / "x.mp3", loud, 16000)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_spectrogram_plot_is_a_png(tmp_path, speech):
    from polydiff.speech.plots import plot_spectrograms

    clean = speech(1.0)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.size)
    out = plot_spectrograms(
        {"noisy": noisy, "enhanced": clean, "clean": clean}, tmp_path / "spec.png", title="t"
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["spec.png"]
    with pytest.raises(ValueError, match="finite mono"):
        plot_spectrograms({"bad": np.array([np.nan] * 600)}, tmp_path / "b.png")
    with pytest.raises(ValueError, match="PNG"):
        plot_spectrograms({"x": clean}, tmp_path / "b.jpg")
