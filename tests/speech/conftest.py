"""Fixtures of the speech tests: deterministic speech-like signals."""

from __future__ import annotations

import numpy as np
import pytest


def speech_like(seconds: float = 2.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Voiced 'syllables': a gliding f0 with 20 decaying harmonics under a 4 Hz on/off envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase + rng.uniform(0, 6)) / k for k in range(1, 21))
    env = np.clip(np.sin(2 * np.pi * 3.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    x = x * env
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture
def speech():
    """The `speech_like(seconds, sr, seed)` generator."""
    return speech_like
