"""Built-in corpus: espeak-ng speech, exact SNR in the written files, reproducibility, reverb."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from polydiff.speech.audio import load_audio
from polydiff.speech.data import PairedSpeech, espeak, list_pairs
from polydiff.speech.data.reverb import random_room, reverberate
from polydiff.speech.data.synth import CorpusConfig, generate_corpus
from polydiff.speech.metrics import si_sdr


def test_espeak_speech_is_trimmed_audio_at_the_requested_rate():
    rng = np.random.default_rng(0)
    voice = espeak.random_voice(rng)
    assert voice.dialect in espeak.DIALECTS and 130 <= voice.rate <= 200
    text = espeak.random_sentence(rng)
    assert text[0].isupper() and text[-1] in ".?"
    a16 = espeak.synthesize(text, voice, 16000)
    a8 = espeak.synthesize(text, voice, 8000)
    assert a16.dtype == np.float32 and 0.5 < a16.size / 16000 < 10
    assert abs(a16.size - 2 * a8.size) <= 2
    assert np.max(np.abs(a16[:800])) > 0  # at most 0.1 s of leading silence
    with pytest.raises(ValueError, match="empty text"):
        espeak.synthesize("  ")


def test_missing_espeak_binary_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install espeak-ng"):
        espeak.synthesize("hello")
    with pytest.raises(FileNotFoundError, match="espeak-ng not found"):
        generate_corpus(tmp_path / "c", CorpusConfig(sizes={"test": 1}))


def test_denoising_corpus_layout_snr_and_reproducibility(tmp_path):
    cfg = CorpusConfig(sizes={"train": 3, "test": 1}, babble_talkers=2, snr_range=(5.0, 15.0))
    generate_corpus(tmp_path / "a", cfg)
    pairs = list_pairs(tmp_path / "a", "train")
    assert [p.name for p in pairs] == ["train_00000.wav", "train_00001.wav", "train_00002.wav"]
    meta = json.loads((tmp_path / "a/train/meta.json").read_text())
    for p, m in zip(pairs, meta, strict=True):
        clean, sr = load_audio(p.clean)
        noisy, _ = load_audio(p.noisy)
        assert sr == 16000 and p.frames == clean.size
        assert 5.0 <= m["snr_db"] <= 15.0 and m["noise"] in cfg.noise_kinds
        snr = 10 * np.log10(np.sum(clean.astype(float) ** 2) / np.sum((noisy - clean) ** 2.0))
        assert snr == pytest.approx(m["snr_db"], abs=0.05)  # up to 16-bit quantisation
        assert 0.3 <= np.max(np.abs(noisy)) <= 0.9
    assert json.loads((tmp_path / "a/corpus.json").read_text())["sizes"] == cfg.sizes
    cfg_b = CorpusConfig(sizes={"train": 1}, babble_talkers=2, snr_range=(5.0, 15.0))
    generate_corpus(tmp_path / "b", cfg_b)
    first = (tmp_path / "a/train/noisy/train_00000.wav").read_bytes()
    assert (tmp_path / "b/train/noisy/train_00000.wav").read_bytes() == first
    item = PairedSpeech(tmp_path / "a", "train")[0]
    assert item["noisy"].shape == (256, 256)


def test_bad_corpus_config():
    with pytest.raises(ValueError, match="task"):
        CorpusConfig(task="separate")
    with pytest.raises(ValueError, match="subsets"):
        CorpusConfig(sizes={"dev": 3})
    with pytest.raises(ValueError, match="noise_kinds"):
        CorpusConfig(noise_kinds=("traffic",))


def test_reverberant_pair_shares_the_direct_path():
    rng = np.random.default_rng(1)
    # Band-limited (< 300 Hz) so the fractional part of the propagation delay barely matters.
    dry = sosfiltfilt(butter(8, 300, fs=16000, output="sos"), rng.standard_normal(4000))
    room = random_room(rng, t60_range=(0.5, 0.5))
    assert all(0.5 <= s <= d - 0.5 for s, d in zip(room.source[:2], room.dims[:2]))
    assert np.linalg.norm(np.subtract(room.source, room.mic)) >= 1.0
    reverberant, direct, info = reverberate(dry, 16000, room)
    assert reverberant.shape == direct.shape == dry.shape
    # The direct render is the dry signal delayed by distance / c: a shifted copy of it.
    delay = int(np.argmax(np.correlate(direct, dry[:2000], "valid")))
    assert si_sdr(dry[: 4000 - delay - 100], direct[delay : 4000 - 100]) > 15
    # Reverberation adds energy that is not in the direct path and lowers SI-SDR.
    assert np.sum(reverberant**2) > 1.2 * np.sum(direct**2)
    assert si_sdr(direct, reverberant) < 10
    assert info["t60_measured"] > 0.3 and info["image_order"] <= 40
