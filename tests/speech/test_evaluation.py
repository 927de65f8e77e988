"""Held-out sets (built-in test clips rebuilt from their seeds, real recordings + noise), the
NFE bookkeeping of the benchmark, and the shipped checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.speech.audio import load_audio
from polydiff.speech.data.real import real_noisy_set
from polydiff.speech.data.synth import CorpusConfig, generate_corpus
from polydiff.speech.evaluation import builtin_clips, score_set, set_summary
from polydiff.speech.shipped import SHIPPED, load_shipped, shipped_checkpoint, shipped_names


@pytest.mark.parametrize("split", ["test", "valid"])
def test_builtin_clips_are_the_files_generate_corpus_writes(tmp_path, split):
    common = dict(babble_talkers=2, noise_kinds=("white", "babble", "hum"))
    sizes = {"train": 1, "valid": 3, "test": 3}
    cfg = CorpusConfig(sizes=sizes, sample_rate=8000, seed=5, **common)
    generate_corpus(tmp_path, cfg)
    clips = builtin_clips(2, 8000, seed=5, start=1, split=split, **common)
    assert [c.name for c in clips] == [f"{split}_00001.wav", f"{split}_00002.wav"]
    for clip in clips:
        clean, sr = load_audio(tmp_path / split / "clean" / clip.name)
        noisy, _ = load_audio(tmp_path / split / "noisy" / clip.name)
        assert sr == clip.sample_rate == 8000
        np.testing.assert_allclose(clip.clean, clean, atol=1 / 2**15)  # 16-bit files
        np.testing.assert_allclose(clip.noisy, noisy, atol=1 / 2**15)


def test_real_noisy_set_mixes_at_the_drawn_snr_reproducibly(tmp_path, speech):
    for name, seed in (("a.wav", 1), ("b.wav", 2)):
        sf.write(tmp_path / name, speech(1.0, 48000, seed), 48000)
    sf.write(tmp_path / "Noise.wav", np.random.default_rng(0).normal(size=48000) * 0.1, 48000)
    files = [tmp_path / "a.wav", tmp_path / "b.wav"]
    kinds = ("pink", "alsa_noise")
    first = real_noisy_set(files, 8000, seed=3, snr_range=(2.0, 12.0), noise_kinds=kinds)
    again = real_noisy_set(files, 8000, seed=3, snr_range=(2.0, 12.0), noise_kinds=kinds)
    for (_, clean, noisy, meta), (*_, n2, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(noisy, n2)
        assert clean.size == 8000 and meta["noise"] in kinds and 2.0 <= meta["snr_db"] <= 12.0
        snr = 10 * np.log10(np.sum(clean.astype(float) ** 2) / np.sum((noisy - clean) ** 2.0))
        assert snr == pytest.approx(meta["snr_db"], abs=1e-3)
        assert np.max(np.abs(noisy)) == pytest.approx(0.7, rel=1e-5)
    assert [m["noise"] for *_, m in first] == list(kinds)
    with pytest.raises(ValueError, match="noise_kinds"):
        real_noisy_set(files, 8000, noise_kinds=("babble",))


def test_nfe_counts_and_summary_of_a_perfect_estimate(speech):
    sgmse, storm = load_shipped("sgmse"), load_shipped("storm")
    assert sgmse.nfe(N=30, corrector_steps=1) == 60  # the papers' 60 NFE at N = 30
    assert sgmse.nfe(sampler="ode", N=30) == 30
    assert storm.nfe(N=10, corrector_steps=0) == 11 and storm.nfe(N=0) == 1
    from polydiff.speech.evaluation import Clip

    clean = speech(2.0, 8000, 0)
    noisy = clean + 0.05 * np.random.default_rng(0).normal(size=clean.size).astype(np.float32)
    clips = [Clip("x.wav", clean, noisy, 8000)]
    rows = score_set(clips, [clean])
    summary = set_summary(rows, 1.0, clips)
    assert summary["si_sdr"]["mean"] > 100 and summary["estoi"]["mean"] > 0.99
    assert summary["rtf"] == pytest.approx(0.5) and summary["audio_seconds"] == 2.0


@pytest.mark.parametrize("name", [*SHIPPED, *shipped_names()])
def test_shipped_checkpoints_load_without_pickle_and_have_a_readme(name):
    folder = shipped_checkpoint(name)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "config.json").read_text())
    method = config["method"]
    assert (config["format"], config["domain"], method) == ("polydiff-method", "speech", method)
    assert (folder / "model.safetensors").stat().st_size < 5_000_000  # a few MB at most
    model = load_shipped(name)
    # the default StoRM works at 16 kHz (issue 19); the earlier models stay available by name
    rate = 16000 if folder.name.endswith("_16k") else 8000
    assert not model.net.training and model.spec.sample_rate == rate and model.name == method
    with pytest.raises(ValueError, match="no shipped"):
        shipped_checkpoint("bbed")


def test_the_default_storm_is_the_16k_one_and_the_8k_one_stays_available():
    assert shipped_checkpoint("storm").name == "storm_micro_16k"
    assert {"storm_micro_8k", "sgmse_micro_8k", "storm_micro_16k"} <= set(shipped_names())
    assert load_shipped("storm").spec.sample_rate == 16000
    assert load_shipped("storm_micro_8k").spec.sample_rate == 8000


def test_warm_start_carries_8k_weights_and_sampler_defaults_into_a_16k_model():
    from polydiff.speech.methods import build_method, warm_start

    old = load_shipped("storm_micro_8k")
    new = build_method("storm", spec="16k_storm", net="micro", spec_changes={"frame_multiple": 8})
    assert new.config.N != old.config.N  # the fresh config has the paper's 20 steps
    warm_start(new, shipped_checkpoint("storm_micro_8k"))
    assert new.spec.sample_rate == 16000 and new.config.N == old.config.N == 0
    assert new.config.t_start == old.config.t_start
    for key, value in old.net.state_dict().items():
        assert torch.equal(new.net.state_dict()[key], value), key
    with pytest.raises(ValueError, match="cannot start a 'sgmse' run"):
        warm_start(build_method("sgmse", net="micro"), shipped_checkpoint("storm"))
    with pytest.raises(ValueError, match="networks have other shapes than this storm run's"):
        warm_start(build_method("storm", net="small"), shipped_checkpoint("storm"))


def test_a_folder_exported_before_the_method_format_still_loads(tmp_path):
    # config.json used to be the flat config with "method"; the weights are the same layout
    import shutil

    from polydiff.speech import load_model

    folder = shipped_checkpoint("sgmse")
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "old").mkdir()
    shutil.copy(folder / "model.safetensors", tmp_path / "old")
    flat = {"method": "sgmse", **config["config"]}
    (tmp_path / "old" / "config.json").write_text(json.dumps(flat))
    old, new = load_model(tmp_path / "old"), load_shipped("sgmse")
    assert old.config == new.config and not old.net.training
    noisy = (0.1 * np.random.default_rng(0).standard_normal(2000)).astype(np.float32)
    np.testing.assert_array_equal(old.enhance(noisy, 8000, N=2), new.enhance(noisy, 8000, N=2))
    (tmp_path / "old" / "config.json").write_text(json.dumps({"method": "bbed"}))
    with pytest.raises(ValueError, match="not a saved polydiff method"):
        load_model(tmp_path / "old")
