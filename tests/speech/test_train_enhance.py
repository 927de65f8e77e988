"""End to end: a few training steps of SGMSE+ / StoRM on a generated micro corpus through
polydiff.core.train, export/load, then enhancement of clips and of a folder."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.speech import enhance_audio_file, load_model
from polydiff.speech.audio import SpecConfig, load_audio
from polydiff.speech.data.synth import CorpusConfig, generate_corpus
from polydiff.speech.nets import PRESETS
from polydiff.speech.sgmse import SGMSE, SGMSEConfig
from polydiff.speech.storm import StoRM, StoRMConfig, predictor_config, score_config
from polydiff.speech.train import train, training_summary

SPEC = SpecConfig(sample_rate=8000, n_fft=62, hop_length=16, frame_multiple=8)
SMALL = {"nf": 8, "ch_mult": (1, 2, 2)}
FIT = {
    "batch_size": 2,
    "num_frames": 32,
    "checkpoint_every": 2,
    "progress_bar": False,
    "accelerator": "cpu",
    "log_every": 1,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("speech_corpus")
    cfg = CorpusConfig(
        sizes={"train": 4, "valid": 2, "test": 2},
        sample_rate=8000,
        noise_kinds=("white", "pink"),
        babble_talkers=1,
        seed=0,
    )
    return generate_corpus(root, cfg)


def tiny_sgmse() -> SGMSE:
    torch.manual_seed(0)
    return SGMSE(SGMSEConfig(spec=SPEC, net=dataclasses.replace(PRESETS["micro"], **SMALL), N=2))


def tiny_storm(mode: str = "joint") -> StoRM:
    torch.manual_seed(0)
    cfg = StoRMConfig(
        spec=SPEC,
        predictor=dataclasses.replace(predictor_config("micro"), **SMALL),
        score=dataclasses.replace(score_config("micro"), **SMALL),
        N=2,
        mode=mode,
    )
    return StoRM(cfg)


def test_sgmse_trains_exports_loads_and_enhances(corpus, tmp_path):
    model = tiny_sgmse()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    module = train(
        model,
        corpus,
        tmp_path / "run",
        max_steps=3,
        seed=0,
        enhance_every=3,
        enhance_files=1,
        **FIT,
    )
    assert module.global_step == 3 and training_summary(module)["steps"] == 3
    assert any(not torch.equal(before[k], v) for k, v in model.net.state_dict().items())
    metrics = next(iter((tmp_path / "run" / "logs").rglob("metrics.csv"))).read_text()
    header, *rows = metrics.splitlines()
    assert "train/loss" in header and "val/loss" in header
    assert {"val/pesq", "val/estoi", "val/si_sdr"} <= set(header.split(","))
    si_sdr = [r.split(",")[header.split(",").index("val/si_sdr")] for r in rows]
    assert [float(v) for v in si_sdr if v]  # logged once, at step 3

    loaded = load_model(tmp_path / "run" / "model")
    assert isinstance(loaded, SGMSE) and loaded.config == model.config
    for k, v in module.ema_net.state_dict().items():  # the export holds the EMA weights
        torch.testing.assert_close(loaded.net.state_dict()[k], v)
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert (config["format"], config["domain"], config["method"]) == (
        "polydiff-method", "speech", "sgmse",
    )  # fmt: skip

    noisy, sr = load_audio(corpus / "test" / "noisy" / "test_00000.wav")
    a = loaded.enhance(noisy, sr, seed=0)
    assert a.shape == noisy.shape and np.isfinite(a).all()
    np.testing.assert_array_equal(a, loaded.enhance(noisy, sr, seed=0))

    # a second call with the same run folder resumes and finds the run complete
    again = train(tiny_sgmse(), corpus, tmp_path / "run", max_steps=3, seed=0, **FIT)
    assert again.global_step == 3


def test_enhance_validation_scores_an_identity_enhancer_as_the_clean_signal(corpus):
    # an enhancer returning its input scores the noisy input, and a perfect one ~ +150 dB
    from polydiff.speech.train import EnhanceValidation

    class Identity(torch.nn.Module):
        spec = SPEC

        def enhance(self, noisy, sr, seed=0):
            return noisy

    val = EnhanceValidation(corpus, subset="test", num_files=1, every_n_steps=1)
    noisy_scores = val.evaluate(Identity())
    assert -10 < noisy_scores["si_sdr"] < 40
    val.pairs = [dataclasses.replace(p, noisy=p.clean) for p in val.pairs]
    means = val.evaluate(Identity())
    assert means["si_sdr"] > 100 and means["estoi"] > 0.99 and means["pesq"] > 4.4
    assert means["pesq"] > noisy_scores["pesq"] and means["estoi"] > noisy_scores["estoi"]
    with pytest.raises(ValueError, match="every_n_steps"):
        EnhanceValidation(corpus, every_n_steps=0)


def test_storm_modes_through_the_training_scaffold(corpus, tmp_path):
    joint = tiny_storm("joint")
    train(joint, corpus, tmp_path / "joint", max_steps=2, validate=False, **FIT)
    assert isinstance(load_model(tmp_path / "joint" / "model"), StoRM)

    pred = tiny_storm("predictive")
    score_before = {k: v.clone() for k, v in pred.net.score_net.state_dict().items()}
    train(pred, corpus, tmp_path / "pred", max_steps=2, validate=False, **FIT)
    for k, v in pred.net.score_net.state_dict().items():  # untouched in the predictive mode
        torch.testing.assert_close(v, score_before[k])

    frozen = tiny_storm("frozen_predictive").load_predictor(tmp_path / "pred" / "model")
    d_before = {k: v.clone() for k, v in frozen.net.predictor.state_dict().items()}
    module = train(frozen, corpus, tmp_path / "frozen", max_steps=2, validate=False, **FIT)
    for k, v in frozen.net.predictor.state_dict().items():  # D stays the loaded predictor
        torch.testing.assert_close(v, d_before[k])
    noisy, sr = load_audio(corpus / "test" / "noisy" / "test_00001.wav")
    out = StoRM(frozen.config, module.eval_net).enhance(noisy, sr, seed=0)
    assert out.shape == noisy.shape and np.isfinite(out).all()
    frozen.save(tmp_path / "exported", module)
    exported = load_model(tmp_path / "exported")
    assert isinstance(exported, StoRM) and exported.config.mode == "frozen_predictive"
    np.testing.assert_array_equal(exported.enhance(noisy, sr, seed=0), out)  # the EMA weights


def test_export_every_writes_loadable_ema_weights_at_each_step(corpus, tmp_path):
    method = tiny_storm("predictive")
    module = train(method, corpus, tmp_path / "run", max_steps=4, validate=False,
                   export_every=2, **FIT)  # fmt: skip
    exports = sorted(p.name for p in (tmp_path / "run" / "exports").iterdir())
    assert exports == ["step_00002", "step_00004"]
    noisy, sr = load_audio(corpus / "test" / "noisy" / "test_00001.wav")
    last = load_model(tmp_path / "run" / "exports" / "step_00004")
    final = StoRM(method.config, module.eval_net).enhance(noisy, sr, seed=0)
    np.testing.assert_array_equal(last.enhance(noisy, sr, seed=0), final)  # the EMA weights
    first = load_model(tmp_path / "run" / "exports" / "step_00002").enhance(noisy, sr, seed=0)
    assert not np.array_equal(first, final)  # a checkpoint of its own step
    with pytest.raises(ValueError, match="every_n_steps"):
        train(method, corpus, tmp_path / "bad", max_steps=1, validate=False, export_every=0)


def short_clips(corpus, folder, seconds: float = 0.5):
    """The test clips' first `seconds` (keeps the folder tests fast), one in a sub-folder."""
    (folder / "sub").mkdir(parents=True)
    for i, f in enumerate(sorted((corpus / "test" / "noisy").glob("*.wav"))):
        x, sr = sf.read(f)
        sf.write(folder / ("sub" if i else "") / f.name, x[: int(seconds * sr)], sr)
    return folder


def test_enhance_folder_writes_each_file_atomically_and_resumes(corpus, tmp_path):
    model = tiny_sgmse()
    in_dir = short_clips(corpus, tmp_path / "in")
    status = model.enhance_folder(in_dir, tmp_path / "out", seed=0, subtype="FLOAT")
    assert status == {"test_00000.wav": "written", "sub/test_00001.wav": "written"}
    for rel in status:
        x, sr = sf.read(tmp_path / "out" / rel)
        y, _ = sf.read(in_dir / rel)
        assert sr == 8000 and x.shape == y.shape == (4000,) and np.isfinite(x).all()
    first = sf.read(tmp_path / "out" / "test_00000.wav")[0]
    # streamed file path == in-memory enhance with the same seed (same chunks, same noise)
    noisy, sr = load_audio(in_dir / "test_00000.wav")
    in_memory = model.enhance(noisy, sr, seed=0)
    np.testing.assert_allclose(first, in_memory, rtol=1e-4, atol=1e-4 * np.abs(in_memory).max())
    # one file is one library call, by method or by saved folder, on the folder's streamed path
    one = tmp_path / "one.wav"
    assert enhance_audio_file(model, in_dir / "test_00000.wav", one, seed=0, subtype="FLOAT") == (
        "written"
    )
    np.testing.assert_array_equal(sf.read(one)[0], first)
    model.save(tmp_path / "saved")
    saved = tmp_path / "saved_one.wav"
    enhance_audio_file(tmp_path / "saved", in_dir / "test_00000.wav", saved, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(saved)[0], first)
    with pytest.raises(ValueError, match="unknown enhance option"):
        enhance_audio_file(model, in_dir / "test_00000.wav", tmp_path / "x.wav", steps=3)
    assert model.enhance_folder(in_dir, tmp_path / "out")["test_00000.wav"] == "exists"
    model.enhance_folder(in_dir, tmp_path / "out", overwrite=True, seed=0, subtype="FLOAT")
    np.testing.assert_array_equal(sf.read(tmp_path / "out" / "test_00000.wav")[0], first)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]

    (in_dir / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.wav"):
        model.enhance_folder(in_dir, tmp_path / "out2")
    status = model.enhance_folder(in_dir, tmp_path / "out2", on_error="skip", subtype="FLOAT")
    assert status["empty.wav"].startswith("error:") and "empty.wav" in status["empty.wav"]
    assert status["test_00000.wav"] == "written" and not (tmp_path / "out2" / "empty.wav").exists()
    with pytest.raises(FileNotFoundError, match="input folder"):
        model.enhance_folder(tmp_path / "nope", tmp_path / "out3")


def test_enhance_folder_never_writes_nan(corpus, tmp_path):
    model = tiny_sgmse()
    with torch.no_grad():
        model.net.score_net.conv_out.bias.fill_(float("nan"))
    in_dir = short_clips(corpus, tmp_path / "in")
    status = model.enhance_folder(in_dir, tmp_path / "out", on_error="skip")
    assert all(s.startswith("error:") and "NaN" in s for s in status.values())
    assert not list((tmp_path / "out").rglob("*.wav"))
