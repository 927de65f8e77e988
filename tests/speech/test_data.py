"""Paired reader (layout, crops, normalisation, mismatches), noise spectra, exact-SNR mixing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import freqz, welch

from polydiff.speech.audio import PRESETS, to_audio
from polydiff.speech.data import PairedSpeech, list_pairs, make_noise, mix_at_snr, noise


def _write_pair(root, subset, name, clean, noisy, sr=16000, sr_noisy=None):
    for kind, x, rate in (("clean", clean, sr), ("noisy", noisy, sr_noisy or sr)):
        (root / subset / kind).mkdir(parents=True, exist_ok=True)
        sf.write(root / subset / kind / name, x, rate, "FLOAT")


def _corpus(tmp_path, lengths=(40000, 20000), sr=16000):
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        clean = 0.03 * rng.standard_normal(n).astype(np.float32)
        noisy = clean + 0.03 * rng.standard_normal(n).astype(np.float32)
        _write_pair(tmp_path, "train", f"f{i}.wav", clean, noisy, sr)
    return tmp_path


def test_random_crops_are_aligned_and_normalised_by_noisy_peak(tmp_path):
    root = _corpus(tmp_path)
    ds = PairedSpeech(root, "train", output="wave")
    assert len(ds) == 2 and ds.num_samples == 255 * 128 == 32640
    clean_full, _ = sf.read(root / "train/clean/f0.wav", dtype="float32")
    noisy_full, _ = sf.read(root / "train/noisy/f0.wav", dtype="float32")
    torch.manual_seed(0)
    starts = set()
    for _ in range(4):
        item = ds[0]
        x, y, scale = item["clean"].numpy(), item["noisy"].numpy(), item["scale"]
        assert x.shape == y.shape == (32640,)
        assert np.max(np.abs(y)) == pytest.approx(1.0)
        # Locate the crop in the original file: both signals come from the same window.
        start = int(
            np.argmin([np.abs(clean_full[s : s + 5] - x[:5] * scale).sum() for s in range(7361)])
        )
        np.testing.assert_allclose(x * scale, clean_full[start : start + 32640], atol=1e-6)
        np.testing.assert_allclose(y * scale, noisy_full[start : start + 32640], atol=1e-6)
        assert scale == pytest.approx(np.max(np.abs(noisy_full[start : start + 32640])))
        starts.add(start)
    assert len(starts) > 1  # random, not fixed


def test_noisy_file_normalisation_uses_the_whole_files_peak(tmp_path):
    """normalize="noisy_file" scales a crop as enhancement scales the whole file: by the file's
    noisy peak, so the crop's own peak is at most 1 (a quiet crop stays quiet)."""
    root = _corpus(tmp_path)
    noisy_full, _ = sf.read(root / "train/noisy/f0.wav", dtype="float32")
    peak = float(np.max(np.abs(noisy_full)))
    ds = PairedSpeech(root, "train", output="wave", num_frames=16, normalize="noisy_file")
    torch.manual_seed(0)
    crop_peaks = []
    for _ in range(6):
        item = ds[0]
        assert item["scale"] == pytest.approx(peak)
        y = item["noisy"].numpy()
        start = int(np.argmin([np.abs(noisy_full[s : s + 5] - y[:5] * peak).sum()
                               for s in range(noisy_full.size - y.size + 1)]))  # fmt: skip
        np.testing.assert_allclose(y * peak, noisy_full[start : start + y.size], atol=1e-6)
        crop_peaks.append(np.max(np.abs(y)))
    assert max(crop_peaks) <= 1.0 and min(crop_peaks) < 0.95  # short crops miss the file's peak


def test_short_files_are_zero_padded_and_spec_output(tmp_path):
    root = _corpus(tmp_path)
    ds = PairedSpeech(root, "train", crop="center")
    item = ds[1]  # 20000 samples < 32640
    assert item["clean"].shape == (256, 256) and item["clean"].is_complex()
    wave = to_audio(item["noisy"], PRESETS["16k"], 32640)
    pad = (32640 - 20000) // 2
    assert torch.all(wave[: pad - 200].abs() < 1e-6)
    noisy, _ = sf.read(root / "train/noisy/f1.wav", dtype="float32")
    np.testing.assert_allclose(wave[pad : pad + 20000] * item["scale"], noisy, atol=1e-5)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["noisy"].shape == (2, 256, 256) and batch["name"] == ["f0.wav", "f1.wav"]


def test_other_rates_are_resampled(tmp_path):
    root = _corpus(tmp_path, lengths=(48000,), sr=48000)
    item = PairedSpeech(root, "train", crop="none", output="wave")[0]
    assert item["clean"].shape == (16000,)


def test_mismatched_pairs_raise_clear_errors(tmp_path):
    x = np.ones(1000, np.float32) * 0.1
    _write_pair(tmp_path, "train", "a.wav", x, x)
    _write_pair(tmp_path, "train", "b.wav", x, x)
    (tmp_path / "train/noisy/b.wav").unlink()
    with pytest.raises(ValueError, match=r"without a partner in noisy/: b\.wav"):
        list_pairs(tmp_path, "train")
    _write_pair(tmp_path, "valid", "c.wav", x, x[:900])
    with pytest.raises(ValueError, match=r"'c\.wav' has different lengths"):
        list_pairs(tmp_path, "valid")
    _write_pair(tmp_path, "test", "d.wav", x, x, sr=16000, sr_noisy=8000)
    with pytest.raises(ValueError, match=r"'d\.wav' has different sample rates"):
        list_pairs(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="missing folder"):
        list_pairs(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="subset"):
        list_pairs(tmp_path, "dev")


def test_silent_noisy_file_is_an_error(tmp_path):
    _write_pair(tmp_path, "train", "s.wav", np.zeros(500, np.float32), np.zeros(500, np.float32))
    with pytest.raises(ValueError, match="silence"):
        PairedSpeech(tmp_path, "train")[0]


def _slope(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Log-log slope of the Welch PSD between lo and hi Hz (power ~ f^slope)."""
    f, p = welch(x, sr, nperseg=4096)
    m = (f >= lo) & (f <= hi)
    return float(np.polyfit(np.log(f[m]), np.log(p[m]), 1)[0])


@pytest.mark.parametrize(("kind", "slope"), [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_colored_noise_spectral_slopes(kind, slope):
    x = make_noise(kind, 16000 * 8, 16000, np.random.default_rng(1))
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0) and abs(x.mean()) < 1e-12
    assert _slope(x, 16000, 50, 4000) == pytest.approx(slope, abs=0.1)


def test_ar_noise_follows_its_filter_response():
    rng = np.random.default_rng(2)
    x, a = noise.ar_noise(16000 * 8, rng, order=4)
    assert np.all(np.abs(np.roots(a)) < 1)
    f, p = welch(x, 1.0, nperseg=1024)
    _, h = freqz([1.0], a, worN=f * 2 * np.pi)
    ratio = p / np.abs(h) ** 2  # flat for an AR process driven by white noise
    assert np.std(np.log(ratio[5:-5])) < 0.2


def test_hum_has_mains_harmonics():
    x = noise.hum(16000 * 4, 16000, np.random.default_rng(3), mains=50.0)
    f, p = welch(x, 16000, nperseg=16000)
    peak = f[np.argmax(p)]
    assert peak in (50.0, 100.0, 150.0)
    assert p[f == 50.0][0] > 1e3 * np.median(p)


def test_babble_is_a_sum_of_talkers():
    rng = np.random.default_rng(4)
    talkers = [np.sin(2 * np.pi * f * np.arange(3000) / 16000) for f in (200.0, 700.0)]
    x = noise.babble(16000, talkers, rng, n_talkers=20)  # P(one talker only) = 2^-19
    f, p = welch(x, 16000, nperseg=1600)
    assert p[f == 200.0][0] > 100 * np.median(p) and p[f == 700.0][0] > 100 * np.median(p)
    with pytest.raises(ValueError, match="talker"):
        make_noise("babble", 100, 16000, rng)
    with pytest.raises(ValueError, match="unknown noise kind"):
        make_noise("traffic", 100, 16000, rng)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.3, 20.0])
def test_mix_at_snr_is_exact(snr_db):
    rng = np.random.default_rng(5)
    clean = rng.standard_normal(8000) * 0.2
    n = noise.fit_length(make_noise("pink", 3000, 16000, rng), 8000, rng)
    noisy, scaled = mix_at_snr(clean, n, snr_db)
    np.testing.assert_allclose(noisy - scaled, clean)
    assert 10 * np.log10(np.sum(clean**2) / np.sum(scaled**2)) == pytest.approx(snr_db, abs=1e-9)
    with pytest.raises(ValueError, match="differ"):
        mix_at_snr(clean, n[:10], 0.0)
