"""Held-out evaluation sets and side-by-side scoring of enhancement methods (demo, benchmark).

Two test sets, both in memory at the model's sample rate: the held-out clips of the built-in
corpus (`builtin_clips`: the very files `polydiff speech data` writes to test/ or valid/,
rebuilt from their seeds) and real recordings mixed with noise (`real_test_clips`:
alsa-utils). `run_method` enhances a set with one sampler setting and times it (real-time
factor), `score_set` gives the per-file PESQ / ESTOI / SI-SDR / SI-SIR / SI-SAR and
`summarize` their means with CIs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polydiff.speech.metrics import evaluate_pair, summarize


@dataclass
class Clip:
    """One (clean, noisy) test pair at ``sample_rate``."""

    name: str
    clean: np.ndarray
    noisy: np.ndarray
    sample_rate: int
    meta: dict = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.noisy.shape[-1] / self.sample_rate


def builtin_clips(
    n: int, sample_rate: int, seed: int = 0, start: int = 0, split: str = "test", **corpus: Any
) -> list[Clip]:
    """Clips ``start .. start+n-1`` of the built-in corpus's ``split`` ("test" or "valid";
    ``CorpusConfig(seed=seed, sample_rate=sample_rate, **corpus)``): the very files of a
    `polydiff speech data` run with the same options. Training fits train/; valid/ gives its
    validation loss and picks sampler settings; test/ is seen only by the benchmark and demo."""
    from polydiff.speech.data.synth import CorpusConfig, subset_clips

    cfg = CorpusConfig(sample_rate=sample_rate, seed=seed, **corpus)
    return [
        Clip(name, clean.astype(np.float32), noisy.astype(np.float32), sample_rate, meta)
        for name, clean, noisy, meta in subset_clips(cfg, split, range(start, start + n))
    ]


def real_test_clips(n: int | None, sample_rate: int, seed: int = 0) -> list[Clip]:
    """The first ``n`` (None: all) alsa-utils recordings mixed with noise at SNR U[0, 20] dB
    (`polydiff.speech.data.real`); [] when alsa-utils is not installed."""
    from polydiff.speech.data.real import alsa_speech_files, real_noisy_set

    files = alsa_speech_files()[:n]
    return [
        Clip(name, clean, noisy, sample_rate, meta)
        for name, clean, noisy, meta in real_noisy_set(files, sample_rate, seed=seed)
    ]


def nfe(method: str, N: int, corrector_steps: int) -> int:
    """Network evaluations per chunk of a PC run: SGMSE+ N (1 + c); StoRM 1 (the predictive
    network) + N (1 + c), and 1 for N = 0 (the predictive model alone)."""
    steps = N * (1 + corrector_steps)
    return steps if method == "sgmse" else 1 + steps


@torch.no_grad()
def run_method(
    model: torch.nn.Module, clips: list[Clip], seed: int = 0, **sampler_kwargs: Any
) -> tuple[list[np.ndarray], float]:
    """Enhance every clip (seeded, `enhance_audio`); returns (estimates, wall seconds)."""
    start = time.perf_counter()
    estimates = [
        model.enhance(c.noisy, c.sample_rate, seed=seed + k, **sampler_kwargs)
        for k, c in enumerate(clips)
    ]
    return estimates, time.perf_counter() - start


def score_set(clips: list[Clip], estimates: list[np.ndarray]) -> list[dict]:
    """Per-file metrics (PESQ, ESTOI, SI-SDR/SIR/SAR) of ``estimates`` against the clean clips."""
    rows = []
    for clip, est in zip(clips, estimates, strict=True):
        row = evaluate_pair(clip.clean, est, clip.sample_rate, noisy=clip.noisy)
        rows.append({"file": clip.name, **row})
    return rows


def set_summary(rows: list[dict], seconds: float | None, clips: list[Clip]) -> dict:
    """Means with CIs per metric, plus the real-time factor (wall seconds / audio seconds)."""
    out: dict[str, Any] = summarize(rows)
    audio = sum(c.seconds for c in clips)
    out["rtf"] = None if seconds is None else seconds / audio
    out["audio_seconds"] = audio
    return out


__all__ = [
    "Clip",
    "builtin_clips",
    "nfe",
    "real_test_clips",
    "run_method",
    "score_set",
    "set_summary",
]
