"""Built-in offline corpus: espeak-ng speech + synthetic noise (and/or room reverberation).

Writes the `{train,valid,test}/{clean,noisy}` layout that `PairedSpeech` reads, so a real corpus
(VoiceBank-DEMAND, WSJ0-CHiME3) drops in for it. Mixing follows the WSJ0-CHiME3 recipe of SGMSE+
(Richter et al., 2023, Sec. V-A): SNR uniform in [0, 20] dB (StoRM uses [-6, 14]). Every clip is
drawn from its own generator seeded by (seed, subset, index), so the corpus is reproducible and
a crashed run can simply be restarted (files are written atomically).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from polydiff.core.io import atomic_write_json
from polydiff.speech.audio import save_audio
from polydiff.speech.data.espeak import espeak_binary, random_sentence, random_voice, synthesize
from polydiff.speech.data.noise import NOISE_KINDS, fit_length, make_noise, mix_at_snr
from polydiff.speech.data.pairs import SUBSETS
from polydiff.speech.data.reverb import random_room, reverberate


@dataclass
class CorpusConfig:
    """What `generate_corpus` builds.

    task: "denoise" (noisy = clean + noise), "dereverb" (noisy = reverberant, clean = direct
        path) or "both" (noisy = reverberant + noise, clean = direct path).
    sizes: clips per subset.
    snr_range: SNR in dB, uniform (w.r.t. the reverberant speech for "both").
    sentences: a clip joins U{lo..hi} sentences with 0.1–0.4 s pauses.
    peak_range: the noisy clip's peak is set to U[lo, hi] (clean scaled alike), so nothing clips.
    babble_talkers: utterances (of other random voices) per subset that babble noise mixes.
    """

    task: Literal["denoise", "dereverb", "both"] = "denoise"
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 200, "valid": 20, "test": 20})
    sample_rate: int = 16000
    snr_range: tuple[float, float] = (0.0, 20.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    sentences: tuple[int, int] = (1, 2)
    peak_range: tuple[float, float] = (0.3, 0.9)
    babble_talkers: int = 12
    t60_range: tuple[float, float] = (0.4, 1.0)
    max_order: int = 40
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in ("denoise", "dereverb", "both"):
            raise ValueError(f"task must be 'denoise', 'dereverb' or 'both', got {self.task!r}")
        bad = set(self.sizes) - set(SUBSETS)
        if bad or any(n < 0 for n in self.sizes.values()):
            raise ValueError(f"sizes: subsets must be in {SUBSETS} with counts >= 0: {self.sizes}")
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown or (self.task != "dereverb" and not self.noise_kinds):
            raise ValueError(f"noise_kinds must be a non-empty subset of {NOISE_KINDS}")
        if self.snr_range[0] > self.snr_range[1] or self.sentences[0] < 1:
            raise ValueError(f"bad snr_range {self.snr_range} or sentences {self.sentences}")


def _utterance(rng: np.random.Generator, cfg: CorpusConfig) -> tuple[np.ndarray, dict]:
    voice = random_voice(rng)
    texts = [random_sentence(rng) for _ in range(int(rng.integers(*cfg.sentences, endpoint=True)))]
    parts = []
    for text in texts:
        parts.append(synthesize(text, voice, cfg.sample_rate))
        parts.append(np.zeros(int(rng.uniform(0.1, 0.4) * cfg.sample_rate), np.float32))
    speech = np.concatenate(parts[:-1]).astype(np.float64)
    return speech / np.max(np.abs(speech)), {"text": " ".join(texts), "voice": voice.to_dict()}


def make_clip(
    rng: np.random.Generator, cfg: CorpusConfig, talkers: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One (clean, noisy, metadata) example of the configured task."""
    speech, meta = _utterance(rng, cfg)
    clean, mixture = speech, speech
    if cfg.task in ("dereverb", "both"):
        mixture, clean, meta["room"] = reverberate(
            speech, cfg.sample_rate, random_room(rng, cfg.t60_range), cfg.max_order
        )
    if cfg.task in ("denoise", "both"):
        kind = str(rng.choice(cfg.noise_kinds))
        snr = float(rng.uniform(*cfg.snr_range))
        noise = fit_length(
            make_noise(kind, speech.size, cfg.sample_rate, rng, talkers), speech.size
        )
        mixture, _ = mix_at_snr(mixture, noise, snr)
        meta.update(noise=kind, snr_db=snr)
    gain = rng.uniform(*cfg.peak_range) / np.max(np.abs(mixture))
    meta["gain"] = float(gain)
    return clean * gain, mixture * gain, meta


def _talkers(cfg: CorpusConfig, s_idx: int) -> list[np.ndarray]:
    """The babble talkers of subset number `s_idx` (their own seeded generator)."""
    if cfg.task == "dereverb" or "babble" not in cfg.noise_kinds:
        return []
    pool_rng = np.random.default_rng([cfg.seed, s_idx, 1 << 30])
    return [_utterance(pool_rng, cfg)[0] for _ in range(cfg.babble_talkers)]


def subset_clips(
    cfg: CorpusConfig, subset: str, indices: Iterable[int]
) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """(name, clean, noisy, meta) of clips `indices` of `subset`, in memory: the very clips that
    `generate_corpus` writes (clip i depends only on (seed, subset, i)), so a held-out test clip
    can be rebuilt without writing the corpus."""
    s_idx = SUBSETS.index(subset)
    talkers = _talkers(cfg, s_idx)
    for i in indices:
        clean, noisy, meta = make_clip(np.random.default_rng([cfg.seed, s_idx, i]), cfg, talkers)
        yield f"{subset}_{i:05d}.wav", clean, noisy, meta


def generate_corpus(
    root: str | os.PathLike,
    cfg: CorpusConfig | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Write the corpus under `root` (WAV, PCM_16) with `<subset>/meta.json` and `corpus.json`.

    Raises FileNotFoundError (with the install hint) up front when espeak-ng is missing.
    `progress(subset, done, total)` is called after each clip.
    """
    cfg = cfg or CorpusConfig()
    espeak_binary()
    root = Path(root)
    for subset in SUBSETS:
        total = cfg.sizes.get(subset, 0)
        if total == 0:
            continue
        metas = []
        for i, (name, clean, noisy, meta) in enumerate(subset_clips(cfg, subset, range(total))):
            save_audio(root / subset / "clean" / name, clean, cfg.sample_rate, on_clip="error")
            save_audio(root / subset / "noisy" / name, noisy, cfg.sample_rate, on_clip="error")
            metas.append({"file": name, **meta})
            if progress is not None:
                progress(subset, i + 1, total)
        atomic_write_json(root / subset / "meta.json", metas, indent=1)
    atomic_write_json(root / "corpus.json", asdict(cfg))
    return root
