"""A real-speech test set available offline: the alsa-utils recordings mixed with noise.

Debian's `alsa-utils` ships eight short studio recordings of a speaker ("Front left", ...; 48 kHz
mono, ~1.4 s each) and a `Noise.wav` in /usr/share/sounds/alsa. The speech is clean, so mixing it
with noise at a known SNR gives (clean, noisy) pairs of real speech for evaluation; the noise is
the synthetic kinds of `polydiff.speech.data.noise` and the recorded `Noise.wav`. Install with
`apt-get install alsa-utils` (or set ``POLYDIFF_ALSA_SOUNDS`` to a folder holding the files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polydiff.speech.audio import load_audio
from polydiff.speech.data.noise import fit_length, make_noise, mix_at_snr

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
NOISE_FILE = "Noise.wav"
# babble needs synthetic talkers; the recorded Noise.wav takes its place here
REAL_NOISE_KINDS = ("white", "pink", "brown", "ar", "hum", "alsa_noise")


def alsa_folder() -> Path:
    """The folder of the alsa-utils recordings (``POLYDIFF_ALSA_SOUNDS`` overrides)."""
    return Path(os.environ.get("POLYDIFF_ALSA_SOUNDS", ALSA_SOUNDS))


def alsa_speech_files(folder: str | os.PathLike | None = None) -> list[Path]:
    """The speech recordings (every .wav but Noise.wav), sorted; [] when absent."""
    folder = alsa_folder() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.wav") if p.name != NOISE_FILE)


def real_noisy_set(
    files: Sequence[str | os.PathLike],
    sample_rate: int,
    *,
    seed: int = 0,
    snr_range: tuple[float, float] = (0.0, 20.0),
    noise_kinds: Sequence[str] = REAL_NOISE_KINDS,
    peak: float = 0.7,
) -> list[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(name, clean, noisy, meta) per recording, at ``sample_rate``: file k gets noise kind
    ``noise_kinds[k % len]`` at an SNR drawn uniformly from ``snr_range`` (one seeded generator
    for the whole set, so the set is reproducible); both are scaled so max|noisy| = ``peak``."""
    unknown = set(noise_kinds) - set(REAL_NOISE_KINDS)
    if unknown or not noise_kinds:
        raise ValueError(f"noise_kinds must be a non-empty subset of {REAL_NOISE_KINDS}")
    rng = np.random.default_rng(seed)
    out = []
    for k, path in enumerate(files):
        path = Path(path)
        clean = load_audio(path, sample_rate)[0].astype(np.float64)
        kind = noise_kinds[k % len(noise_kinds)]
        if kind == "alsa_noise":
            recorded = load_audio(path.parent / NOISE_FILE, sample_rate)[0].astype(np.float64)
            noise = fit_length(recorded, clean.size, rng)
        else:
            noise = make_noise(kind, clean.size, sample_rate, rng)
        snr = float(rng.uniform(*snr_range))
        noisy, _ = mix_at_snr(clean, noise, snr)
        gain = peak / np.max(np.abs(noisy))
        meta = {"source": str(path), "noise": kind, "snr_db": snr}
        out.append(
            (path.name, (clean * gain).astype(np.float32), (noisy * gain).astype(np.float32), meta)
        )
    return out


__all__ = ["ALSA_SOUNDS", "REAL_NOISE_KINDS", "alsa_folder", "alsa_speech_files", "real_noisy_set"]
