"""Synthetic noise (white, pink, brown, AR-filtered, hum, babble) and mixing at an exact SNR.

No environmental noise corpus is available offline, so the built-in corpus draws noise from these
generators. Every generator returns float64 noise of unit RMS; `mix_at_snr` sets the level.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

NOISE_KINDS = ("white", "pink", "brown", "ar", "hum", "babble")


def _unit_rms(x: np.ndarray) -> np.ndarray:
    x = x - x.mean()
    return x / np.sqrt(np.mean(x**2))


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise (flat power spectrum)."""
    return _unit_rms(rng.standard_normal(n))


def colored(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectral density proportional to 1 / f^exponent (FFT shaping).

    exponent 1 is pink noise (-3 dB/octave), 2 is brown (red) noise (-6 dB/octave).
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]  # avoid the DC singularity; DC is removed by _unit_rms anyway
    return _unit_rms(np.fft.irfft(spec * f ** (-exponent / 2), n))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    return colored(n, 1.0, rng)


def brown(n: int, rng: np.random.Generator) -> np.ndarray:
    return colored(n, 2.0, rng)


def ar_noise(n: int, rng: np.random.Generator, order: int = 4, max_radius: float = 0.95):
    """White noise through a random stable all-pole filter (conjugate pole pairs, |p| < 1).

    Gives resonant, coloured noise like machinery or vehicle interiors. Returns (noise, a) with
    `a` the AR polynomial (denominator) so tests can check the spectral peaks.
    """
    if order < 2 or order % 2:
        raise ValueError(f"ar_noise: order must be an even number >= 2, got {order}")
    radii = rng.uniform(0.5, max_radius, order // 2)
    angles = rng.uniform(0.02 * np.pi, 0.98 * np.pi, order // 2)
    poles = radii * np.exp(1j * angles)
    a = np.real(np.poly(np.concatenate([poles, poles.conj()])))
    burn = 2000  # discard the filter's transient
    x = lfilter([1.0], a, rng.standard_normal(n + burn))[burn:]
    return _unit_rms(x), a


def hum(
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    mains: float | None = None,
    harmonics: int = 8,
    floor_db: float = -30.0,
) -> np.ndarray:
    """Mains hum: harmonics of 50 or 60 Hz with random 1/k-decaying amplitudes and phases, plus a
    white floor `floor_db` below."""
    f0 = mains if mains is not None else float(rng.choice([50.0, 60.0]))
    t = np.arange(n) / sample_rate
    k = np.arange(1, harmonics + 1)[:, None]
    amp = rng.uniform(0.3, 1.0, (harmonics, 1)) / k
    x = np.sum(amp * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi, (harmonics, 1))), 0)
    return _unit_rms(_unit_rms(x) + 10 ** (floor_db / 20) * rng.standard_normal(n))


def babble(
    n: int, talkers: Sequence[np.ndarray], rng: np.random.Generator, n_talkers: int = 6
) -> np.ndarray:
    """Overlapped speech: `n_talkers` random utterances from `talkers`, each at unit RMS and a
    random offset, tiled/cropped to n samples and summed."""
    if not talkers:
        raise ValueError("babble: needs at least one talker recording")
    out = np.zeros(n)
    for idx in rng.integers(0, len(talkers), n_talkers):
        s = np.asarray(talkers[idx], dtype=np.float64)
        if not np.any(s):
            raise ValueError("babble: a talker recording is silent")
        s = np.tile(s, int(np.ceil(n / s.size)) + 1)
        start = int(rng.integers(0, s.size - n + 1))
        out += _unit_rms(s[start : start + n])
    return _unit_rms(out)


def make_noise(
    kind: str,
    n: int,
    sample_rate: int,
    rng: np.random.Generator,
    talkers: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Unit-RMS noise of one of NOISE_KINDS ("babble" needs `talkers`)."""
    if kind == "white":
        return white(n, rng)
    if kind == "pink":
        return pink(n, rng)
    if kind == "brown":
        return brown(n, rng)
    if kind == "ar":
        return ar_noise(n, rng)[0]
    if kind == "hum":
        return hum(n, sample_rate, rng)
    if kind == "babble":
        return babble(n, talkers, rng)
    raise ValueError(f"unknown noise kind {kind!r}; choose from {NOISE_KINDS}")


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tile (if shorter) and crop (at a random offset when `rng` is given) to n samples."""
    if noise.size == 0:
        raise ValueError("fit_length: empty noise")
    if noise.size < n:
        noise = np.tile(noise, int(np.ceil(n / noise.size)))
    start = int(rng.integers(0, noise.size - n + 1)) if rng is not None else 0
    return noise[start : start + n]


def mix_at_snr(
    clean: np.ndarray, noise: np.ndarray, snr_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """noisy = clean + g * noise with g chosen so 10 log10(|clean|^2 / |g noise|^2) = snr_db.

    Both signals must have the same length (use `fit_length`). Returns (noisy, g * noise).
    """
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if clean.shape != noise.shape:
        raise ValueError(f"mix_at_snr: clean {clean.shape} and noise {noise.shape} differ")
    p_s, p_n = np.sum(clean**2), np.sum(noise**2)
    if p_s == 0 or p_n == 0:
        raise ValueError("mix_at_snr: clean and noise must both be non-silent")
    scaled = noise * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))
    return clean + scaled, scaled
