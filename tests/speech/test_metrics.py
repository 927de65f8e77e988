"""Metrics on signals with known answers: SI-SDR at a set SNR, SI-SIR/SAR parts, PESQ/ESTOI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from polydiff.speech import metrics as M


def _orthonormal(n: int, k: int, seed: int = 0) -> np.ndarray:
    """k zero-mean, mutually orthogonal, unit-norm vectors of length n (columns)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, k))
    a -= a.mean(0)
    q, _ = np.linalg.qr(a)
    return q


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 7.5, 30.0])
def test_si_sdr_equals_snr_for_orthogonal_noise(snr_db):
    q = _orthonormal(4000, 2)
    s, n = 3.0 * q[:, 0], q[:, 1]
    est = s + n * (np.linalg.norm(s) / np.linalg.norm(n)) * 10 ** (-snr_db / 20)
    assert M.si_sdr(s, est) == pytest.approx(snr_db, abs=1e-9)


def test_si_sdr_of_correlated_noise_matches_closed_form():
    # est = s + n with <n, s> != 0: alpha = 1 + <n,s>/|s|^2, residual = n - (<n,s>/|s|^2) s.
    rng = np.random.default_rng(1)
    s, n = rng.standard_normal(3000), 0.5 * rng.standard_normal(3000)
    s, n = s - s.mean(), n - n.mean()
    c = (n @ s) / (s @ s)
    res = n - c * s
    expected = 10 * np.log10((1 + c) ** 2 * (s @ s) / (res @ res))
    assert M.si_sdr(s, s + n) == pytest.approx(expected, abs=1e-9)


def test_scale_invariance_and_perfect_estimate():
    rng = np.random.default_rng(2)
    s = rng.standard_normal(2000)
    est = s + 0.3 * rng.standard_normal(2000)
    n = est - s
    base = M.si_bss(s, n, est)
    for k in (1e-3, 0.5, 7.0, -2.0):
        assert M.si_sdr(s, k * est) == pytest.approx(base["si_sdr"], abs=1e-9)
        scaled = M.si_bss(s, n, k * est)
        for key in base:
            assert scaled[key] == pytest.approx(base[key], abs=1e-9)
    # The target's scale does not matter either.
    assert M.si_sdr(5 * s, est) == pytest.approx(base["si_sdr"], abs=1e-9)
    assert M.si_sdr(s, s) == pytest.approx(150, abs=1e-3)
    assert M.si_sdr(s, s + 100.0) > 100  # zero-mean: a DC offset is not an error


def test_si_sir_sar_decomposition_with_known_parts():
    q = _orthonormal(5000, 3, seed=3)
    s, n, art = 2.0 * q[:, 0], q[:, 1], q[:, 2]
    a, b, c = 0.8, 0.1, 0.05
    r = M.si_bss(s, n, a * s + b * n + c * art)
    assert r["si_sir"] == pytest.approx(10 * np.log10(a**2 * 4 / b**2), abs=1e-9)
    assert r["si_sar"] == pytest.approx(10 * np.log10(a**2 * 4 / c**2), abs=1e-9)
    assert r["si_sdr"] == pytest.approx(10 * np.log10(a**2 * 4 / (b**2 + c**2)), abs=1e-9)


def test_sdr_sir_sar_identity_for_non_orthogonal_noise():
    rng = np.random.default_rng(4)
    s = rng.standard_normal(3000)
    n = 0.4 * s + rng.standard_normal(3000)  # correlated with the target
    est = 0.9 * s + 0.3 * n + 0.2 * rng.standard_normal(3000)
    r = M.si_bss(s, n, est)
    lhs = 10 ** (-r["si_sdr"] / 10)
    rhs = 10 ** (-r["si_sir"] / 10) + 10 ** (-r["si_sar"] / 10)
    assert lhs == pytest.approx(rhs, rel=1e-9)
    assert r["si_sdr"] == pytest.approx(M.si_sdr(s, est), abs=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="equal length"):
        M.si_sdr(np.ones(10), np.ones(11))
    with pytest.raises(ValueError, match="silent"):
        M.si_sdr(np.zeros(10), np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        M.si_sdr(np.array([1.0, np.nan]), np.ones(2))


def test_pesq_and_estoi_are_perfect_on_identity_and_fall_with_noise(speech):
    sr = 16000
    s = speech(3.0, sr)
    noise = np.random.default_rng(0).standard_normal(s.size).astype(np.float32)
    noise *= np.linalg.norm(s) / np.linalg.norm(noise)
    assert M.pesq_wb(s, s, sr) > 4.5
    assert M.estoi(s, s, sr) == pytest.approx(1.0, abs=1e-6)
    pesq_20, pesq_0 = (M.pesq_wb(s, s + noise * 10 ** (-d / 20), sr) for d in (20, 0))
    estoi_20, estoi_0 = (M.estoi(s, s + noise * 10 ** (-d / 20), sr) for d in (20, 0))
    assert 4.5 > pesq_20 > pesq_0 >= 1.0
    assert 1.0 > estoi_20 > estoi_0
    # 48 kHz input is resampled to 16 kHz for PESQ.
    s48 = speech(3.0, 48000)
    assert M.pesq_wb(s48, s48, 48000) > 4.5
    with pytest.raises(ValueError, match="PESQ failed"):
        M.pesq_wb(s, np.zeros_like(s), sr)


def test_mean_ci_matches_student_t():
    vals = [1.0, 2.0, 3.0, 4.0, math.nan]
    m, h, n = M.mean_ci(vals)
    # t_{0.975, 3} = 3.182446305; sem = std(ddof=1)/sqrt(4) = 1.2909944/2.
    assert (m, n) == (2.5, 4)
    assert h == pytest.approx(3.182446305284263 * 1.2909944487358056 / 2, rel=1e-9)
    assert M.mean_ci([])[2] == 0 and math.isnan(M.mean_ci([1.0])[1])


def test_evaluate_and_write_metrics(tmp_path, speech):
    sr = 16000
    s = speech(2.0, sr, seed=1)
    rng = np.random.default_rng(5)
    noisy = s + 0.05 * rng.standard_normal(s.size)
    est = s + 0.01 * rng.standard_normal(s.size)
    r = M.evaluate_pair(s, est, sr, noisy=noisy)
    assert set(r) == set(M.METRICS)
    assert r["si_sdr"] > M.si_sdr(s, noisy)
    assert r["pesq"] > M.pesq_wb(s, noisy, sr) and r["estoi"] > M.estoi(s, noisy, sr)
    rows = [{"file": "a.wav", **r}, {"file": "b.wav", **r, "pesq": math.nan}]
    summary = M.write_metrics(
        rows, tmp_path / "m.csv", tmp_path / "m.json", extra={"method": "test"}
    )
    assert summary["pesq"]["n"] == 1 and summary["si_sdr"]["n"] == 2
    assert summary["si_sdr"]["ci"] == pytest.approx(0.0, abs=1e-9)
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["method"] == "test" and doc["files"][1]["pesq"] is None
    assert doc["summary"]["si_sdr"]["mean"] == pytest.approx(r["si_sdr"])
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0].startswith("file,pesq") and len(lines) == 3 and ",," in lines[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "m.json"]


def test_evaluate_folder(tmp_path, speech):
    sr = 16000
    rng = np.random.default_rng(6)
    for d in ("clean", "noisy", "enh"):
        (tmp_path / d).mkdir()
    for i in range(2):
        s = speech(1.5, sr, seed=i)
        noisy = s + 0.05 * rng.standard_normal(s.size)
        sf.write(tmp_path / "clean" / f"{i}.wav", s, sr, "FLOAT")
        sf.write(tmp_path / "noisy" / f"{i}.wav", noisy, sr, "FLOAT")
        sf.write(tmp_path / "enh" / f"{i}.wav", s + 0.005 * (noisy - s), sr, "FLOAT")
    rows = M.evaluate_folder(tmp_path / "clean", tmp_path / "enh", tmp_path / "noisy")
    assert [r["file"] for r in rows] == ["0.wav", "1.wav"]
    for r in rows:
        clean = sf.read(tmp_path / "clean" / r["file"])[0]
        noisy = sf.read(tmp_path / "noisy" / r["file"])[0]
        # The estimate is clean + 0.005 noise: inside span{s, n}, so no artifacts, and the
        # interference is the noise 46 dB down.
        assert r["si_sar"] > 100 and r["si_sir"] == pytest.approx(r["si_sdr"], abs=1e-6)
        assert r["si_sdr"] == pytest.approx(M.si_sdr(clean, noisy) + 46.02, abs=0.1)
    sf.write(tmp_path / "enh" / "0.wav", np.ones(100) * 0.1, sr)
    with pytest.raises(ValueError, match=r"0\.wav: the enhanced file has 100 samples"):
        M.evaluate_folder(tmp_path / "clean", tmp_path / "enh")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        M.evaluate_folder(tmp_path / "nope", tmp_path / "enh")


def test_evaluating_one_file_with_its_noisy_input_writes_strict_json(tmp_path):
    """One file: every confidence interval is undefined (NaN); metrics.json holds null there,
    also in the noisy input's summary, instead of failing to write."""
    t = np.arange(16000) / 16000
    clean = 0.3 * np.sin(2 * np.pi * 220 * t)
    rng = np.random.default_rng(0)
    for folder, noise in (("clean", 0.0), ("noisy", 0.05), ("enhanced", 0.01)):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "a.wav", clean + noise * rng.standard_normal(t.size), 16000)
    from polydiff.speech.evaluation import evaluate_folders

    d = tmp_path
    result = evaluate_folders(d / "clean", d / "enhanced", d / "out", noisy=d / "noisy", plot=False)
    assert "(no CI) (n=1)   noisy: " in result["table"]["si_sdr"]  # not "± nan"
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert doc["summary"]["si_sdr"]["n"] == 1 and doc["summary"]["si_sdr"]["ci"] is None
    assert doc["noisy_summary"]["si_sdr"]["ci"] is None
    assert doc["summary"]["si_sdr"]["mean"] > doc["noisy_summary"]["si_sdr"]["mean"]
