"""End to end: `polydiff speech data|train|enhance|evaluate` on a tiny 8 kHz corpus and model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import check_demo_report

from polydiff.apps.registry import compose_config

POLYDIFF = Path(sys.executable).with_name("polydiff")

SR = "8000"
TINY_CORPUS = (
    "data.train=4",
    "data.valid=1",
    "data.test=2",
    f"data.sample_rate={SR}",
    "data.noise_kinds=[white,pink]",
    "data.babble_talkers=1",
)
TINY_MODEL = (
    f"spec.sample_rate={SR}",
    "spec.n_fft=62",
    "spec.hop_length=16",
    "spec.frame_multiple=8",
    "net.nf=8",
    "net.ch_mult=[1,2,2]",
)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [str(POLYDIFF), "speech", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def usage_error(out: subprocess.CompletedProcess[str], needle: str) -> None:
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert needle in last, out.stderr[-3000:]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("speech_cli")


@pytest.fixture(scope="module")
def corpus(work: Path) -> Path:
    ok(run(work, "data", *TINY_CORPUS, "hydra.run.dir=data"))
    return work / "data" / "corpus"


@pytest.fixture(scope="module")
def model(work: Path, corpus: Path) -> Path:
    args = (f"data_root={corpus}", *TINY_MODEL, "train.steps=2", "train.batch_size=2")
    out = ok(
        run(
            work,
            "train",
            *args,
            "train.num_frames=32",
            "trainer.accelerator=cpu",
            "hydra.run.dir=t",
        )
    )
    (work / "t" / "console.txt").write_text(out.stdout + out.stderr)
    return work / "t" / "model"


def test_data_writes_the_paired_layout(corpus: Path):
    for subset, n in (("train", 4), ("valid", 1), ("test", 2)):
        clean = sorted((corpus / subset / "clean").glob("*.wav"))
        noisy = sorted((corpus / subset / "noisy").glob("*.wav"))
        assert len(clean) == n and [p.name for p in clean] == [p.name for p in noisy]
        meta = json.loads((corpus / subset / "meta.json").read_text())
        assert [m["file"] for m in meta] == [p.name for p in clean]
        assert all(m["noise"] in ("white", "pink") and 0 <= m["snr_db"] <= 20 for m in meta)
        for c, y in zip(clean, noisy, strict=True):
            x, sr = sf.read(c)
            assert sr == int(SR) and sf.info(y).frames == x.size and np.abs(x).max() > 0
    assert json.loads((corpus / "corpus.json").read_text())["sizes"]["test"] == 2


def test_data_rejects_a_bad_task(work: Path):
    usage_error(run(work, "data", "data.task=denoize", "hydra.run.dir=bad_data"), "data.task")


def test_train_exports_a_loadable_model(model: Path):
    from polydiff.speech.sgmse import SGMSE

    loaded = SGMSE.load(model)
    assert isinstance(loaded, SGMSE)
    assert loaded.spec.sample_rate == int(SR) and loaded.config.net.nf == 8
    metrics = json.loads((model.parent / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["method"] == "sgmse"
    assert np.isfinite(metrics["train_loss"])
    assert (model.parent / "train" / "checkpoints" / "last.ckpt").is_file()  # resumable
    # the run scores itself against the noisy input on the validation clips and says when it
    # lost (two steps of training lose: issue 14 item 6, a run worse than its baseline says so)
    report = metrics["validation"]
    assert report["files"] == 1 and set(report["noisy"]) == {"pesq", "estoi", "si_sdr"}
    console = (model.parent / "console.txt").read_text()
    assert "validation (1 files, noisy -> enhanced): pesq " in console
    assert report["worse"] and f"warning: the model makes {', '.join(report['worse'])}" in console


def test_the_same_train_command_repeats_exactly(work: Path, corpus: Path, model: Path):
    """Seeded training repeats on CPU: the same command gives the same loss and weights
    (initialisation, crops, noise mixing and diffusion times all follow the seed)."""
    from safetensors.torch import load_file

    args = (f"data_root={corpus}", *TINY_MODEL, "train.steps=2", "train.batch_size=2")
    ok(run(work, "train", *args, "train.num_frames=32", "trainer.accelerator=cpu",
           "hydra.run.dir=t_again"))  # fmt: skip
    again = work / "t_again" / "model"
    first, second = load_file(model / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    losses = [json.loads((m.parent / "metrics.json").read_text())["train_loss"]
              for m in (model, again)]  # fmt: skip
    assert losses[0] == losses[1]


def test_train_warmup_steps_reach_the_optimizer(work: Path, corpus: Path, model: Path):
    """train.warmup_steps ramps the learning rate: with a long warm-up the same seeded command
    moves the weights less from their (seeded, identical) start than without; a negative value
    is refused naming the option."""
    from safetensors.torch import load_file

    args = (f"data_root={corpus}", *TINY_MODEL, "train.batch_size=2", "train.num_frames=32")
    common = (*args, "train.ema_warmup=false", "train.ema=0.5", "trainer.accelerator=cpu")
    ok(run(work, "train", *common, "train.steps=1", "train.lr=1e-12", "hydra.run.dir=w0"))
    ok(run(work, "train", *common, "train.steps=2", "hydra.run.dir=w_plain"))
    ok(
        run(
            work, "train", *common, "train.steps=2", "train.warmup_steps=1000", "hydra.run.dir=w_wu"
        )
    )
    start, plain, slow = (load_file(work / d / "model" / "model.safetensors")
                          for d in ("w0", "w_plain", "w_wu"))  # fmt: skip

    def moved(w: dict) -> float:
        return sum((w[k] - start[k]).abs().sum().item() for k in start)

    assert 0 < moved(slow) < 0.1 * moved(plain)
    usage_error(run(work, "train", *args, "train.warmup_steps=-1", "hydra.run.dir=w_bad"),
                "train.warmup_steps")  # fmt: skip


def test_train_exports_every_n_steps_and_takes_the_linear_loss_weight(work: Path, corpus: Path):
    """train.export_every writes the EMA weights of those steps (to pick one by validation
    metrics); storm.linear_weight reaches the StoRM config; bad values name their option."""
    from polydiff.speech.storm import StoRM

    args = (f"data_root={corpus}", *TINY_MODEL, "train.batch_size=2", "train.num_frames=32",
            "trainer.accelerator=cpu", "method=storm", "storm.mode=predictive")  # fmt: skip
    ok(run(work, "train", *args, "train.steps=2", "train.export_every=1",
           "storm.linear_weight=0.05", "report_files=0", "hydra.run.dir=x_ok"))  # fmt: skip
    exports = work / "x_ok" / "train" / "exports"
    assert sorted(p.name for p in exports.iterdir()) == ["step_00001", "step_00002"]
    assert StoRM.load(exports / "step_00001").config.linear_weight == 0.05
    usage_error(run(work, "train", *args, "train.export_every=0", "hydra.run.dir=x_bad"),
                "train.export_every")  # fmt: skip
    usage_error(run(work, "train", *args, "storm.linear_weight=-1", "hydra.run.dir=x_bad2"),
                "linear_weight")  # fmt: skip


def test_train_rejects_a_missing_or_malformed_corpus(work: Path):
    usage_error(run(work, "train", "data_root=nowhere", "hydra.run.dir=bad_t1"), "data_root")
    no_train = run(work, "train", f"data_root={work}", "hydra.run.dir=bad_t2")
    usage_error(no_train, "has no train/ folder")


def test_train_options_build_storm_in_every_mode():
    from polydiff.apps.commands.speech import build_model
    from polydiff.apps.registry import ConfigError
    from polydiff.speech.storm import StoRM

    for mode in ("joint", "predictive"):
        cfg = compose_config("speech/train", ["method=storm", f"storm.mode={mode}", *TINY_MODEL])
        storm = build_model(cfg)
        assert isinstance(storm, StoRM) and storm.config.mode == mode
        assert storm.config.predictor.in_channels == 2 and not storm.config.predictor.conditional
        assert storm.config.score.in_channels == 6 and storm.config.score.nf == 8
        assert storm.spec.beta == pytest.approx(0.33)  # the 16k_storm preset under the overrides
    with pytest.raises(ConfigError, match=r"storm\.predictor"):
        build_model(
            compose_config("speech/train", ["method=storm", "storm.mode=frozen_predictive"])
        )
    with pytest.raises(ConfigError, match="method"):
        build_model(compose_config("speech/train", ["method=bbed"]))


def test_enhance_a_folder_and_a_file_deterministically(work: Path, corpus: Path, model: Path):
    from polydiff.speech.audio import load_audio
    from polydiff.speech.sgmse import SGMSE

    noisy = corpus / "test" / "noisy"
    ok(run(work, "enhance", f"model={model}", f"input={noisy}", "N=2", "hydra.run.dir=enh"))
    out = work / "enh" / "enhanced"
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(p.name for p in noisy.glob("*.wav"))
    report = json.loads((work / "enh" / "enhance.json").read_text())
    assert set(report["files"].values()) == {"written"} and report["sampler_options"] == {"N": 2}

    src = noisy / "test_00000.wav"
    args = ("subtype=FLOAT", "N=2", "seed=3")
    ok(run(work, "enhance", f"model={model}", f"input={src}", "output=one.wav", *args))
    one, sr = sf.read(work / "one.wav")
    assert sr == int(SR) and one.shape == (sf.info(src).frames,) and np.isfinite(one).all()
    # the file equals the library's in-memory enhancement with the same seed (float I/O)
    expected = SGMSE.load(model).enhance(load_audio(src)[0], int(SR), seed=3, N=2)
    np.testing.assert_allclose(one, expected, atol=2e-5)
    # a later start of the reverse process (t_start) reaches the library the same way
    late = ("output=late.wav", "t_start=0.5", "hydra.run.dir=enh_late")
    ok(run(work, "enhance", f"model={model}", f"input={src}", *args, *late))
    report = json.loads((work / "enh_late" / "enhance.json").read_text())
    assert report["sampler_options"] == {"N": 2, "t_start": 0.5}
    expected = SGMSE.load(model).enhance(load_audio(src)[0], int(SR), seed=3, N=2, t_start=0.5)
    np.testing.assert_allclose(sf.read(work / "late.wav")[0], expected, atol=2e-5)
    assert not np.allclose(expected, one, atol=1e-3)


def test_enhance_rejects_a_missing_model_and_a_non_audio_input(
    work: Path, corpus: Path, model: Path
):
    usage_error(run(work, "enhance", "model=nowhere", "input=x.wav", "hydra.run.dir=b1"), "model")
    (work / "notes.txt").write_text("not audio")
    args = (f"model={model}", "input=notes.txt", "hydra.run.dir=b2")
    usage_error(run(work, "enhance", *args), "not a .wav/.flac file")
    src = corpus / "test" / "noisy" / "test_00000.wav"
    for bad in ("1.5", "0.01"):  # above 1, or below the model's t_eps (0.03): never trained
        args = (f"model={model}", f"input={src}", f"t_start={bad}", "hydra.run.dir=b4")
        usage_error(run(work, "enhance", *args), "this model: t_start must be in (0.03, 1]")


def test_evaluate_scores_known_signals(work: Path, corpus: Path):
    # clean against itself is perfect, and the noisy input lies in span{s, n}: SI-SAR = +150 dB
    test = corpus / "test"
    args = (f"clean={test / 'clean'}", f"enhanced={test / 'clean'}", f"noisy={test / 'noisy'}")
    ok(run(work, "evaluate", *args, f"sample_rate={SR}", "hydra.run.dir=ev"))
    report = json.loads((work / "ev" / "metrics.json").read_text())
    perfect, noisy = report["summary"], report["noisy_summary"]
    assert perfect["si_sdr"]["mean"] > 100 and perfect["estoi"]["mean"] > 0.99
    assert perfect["pesq"]["mean"] > 4.4 and perfect["si_sdr"]["n"] == 2
    assert noisy["si_sar"]["mean"] > 100
    assert noisy["si_sdr"]["mean"] == pytest.approx(noisy["si_sir"]["mean"], abs=1e-6)
    assert noisy["pesq"]["mean"] < perfect["pesq"]["mean"] and noisy["si_sdr"]["mean"] < 40
    rows = (work / "ev" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("file,") and len(rows) == 3
    assert (work / "ev" / "spectrogram.png").stat().st_size > 1000


def test_evaluate_rejects_mismatched_folders(work: Path, corpus: Path):
    args = (f"clean={corpus / 'valid' / 'clean'}", f"enhanced={corpus / 'test' / 'clean'}")
    usage_error(run(work, "evaluate", *args, "hydra.run.dir=b3"), "test_00000.wav")


def test_enhance_without_model_uses_the_shipped_storm(work: Path, corpus: Path):
    from polydiff.speech.shipped import shipped_checkpoint

    src = corpus / "test" / "noisy" / "test_00000.wav"  # 8 kHz, the shipped model's rate
    # the short form `enhance in.wav -o out.wav` (the input as the bare argument)
    ok(run(work, "enhance", str(src), "-o", "shipped.wav", "N=1", "hydra.run.dir=ship"))
    out, sr = sf.read(work / "shipped.wav")
    assert sr == int(SR) and out.shape == (sf.info(src).frames,) and np.isfinite(out).all()
    assert np.abs(out).max() > 0  # not silence
    report = json.loads((work / "ship" / "enhance.json").read_text())
    assert report["method"] == "storm"
    assert report["model"] == f"shipped:{shipped_checkpoint('storm').name}"


def _band_energy_above(y: np.ndarray, sr: int, hz: float) -> float:
    """Fraction of the signal's energy above `hz`."""
    power = np.abs(np.fft.rfft(y)) ** 2
    return float(power[np.fft.rfftfreq(y.size, 1 / sr) > hz].sum() / power.sum())


def test_enhance_writes_at_the_input_rate_and_says_the_band_is_narrower(work, corpus):
    """A 16 kHz file through the shipped 8 kHz model (by name) comes back at 16 kHz, with a
    one-line notice that nothing above 4 kHz was restored (issue 14: audio in the user's band);
    the default model works at 16 kHz: no notice, and the upper band is there (issue 19)."""
    from polydiff.speech.audio import save_audio
    from polydiff.speech.data.synth import CorpusConfig, subset_clips

    # a 16 kHz clip of the built-in corpus: espeak-ng speech has 0.2% of its energy above 4 kHz
    cfg = CorpusConfig(sample_rate=16000, noise_kinds=("pink",), snr_range=(10.0, 10.0))
    _, _, audio, _ = next(subset_clips(cfg, "test", [0]))
    save_audio(work / "in16k.wav", audio, 16000)
    out = ok(run(work, "enhance", "in16k.wav", "-o", "out16k.wav", "N=0",
                 "model=storm_micro_8k", "hydra.run.dir=r16"))  # fmt: skip
    y, sr = sf.read(work / "out16k.wav")
    assert sr == 16000 and abs(y.size - audio.size) <= 1 and np.abs(y).max() > 0
    notes = [line for line in out.stderr.splitlines() if "no content above 4000 Hz" in line]
    assert notes == [
        "polydiff: warning: out16k.wav: written at the input's 16000 Hz, but the "
        "model works at 8000 Hz, so the output has no content above 4000 Hz"
    ]
    assert _band_energy_above(y, sr, 4100) < 1e-4  # resampled from 8 kHz: nothing up there
    report = json.loads((work / "r16" / "enhance.json").read_text())
    assert report["model"] == "shipped:storm_micro_8k"
    out = ok(run(work, "enhance", "in16k.wav", "-o", "out16k_default.wav", "hydra.run.dir=d16"))
    assert "no content above" not in out.stderr
    y, sr = sf.read(work / "out16k_default.wav")
    assert sr == 16000 and _band_energy_above(y, sr, 4100) > 5e-4  # the speech's upper band


def test_quick_demo_stage_end_to_end(work: Path):
    from polydiff.speech.data.real import alsa_speech_files

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    args = [str(POLYDIFF), "demo", "domains=[speech]", "quick=true", "hydra.run.dir=demo_q"]
    ok(subprocess.run(args, cwd=work, env=env, capture_output=True, text=True))
    run_dir = work / "demo_q"
    report = check_demo_report(run_dir, "speech", ["speech/spectrogram.png"], row=".*PESQ = ")
    metrics = json.loads((run_dir / "speech" / "metrics.json").read_text())
    # the shipped StoRM's default is its predictive network (N=0); quick compares N=2 beside it
    assert metrics["method"] == "storm" and metrics["sampler_options"] == {"N": 0}
    sets = metrics["sets"]
    expected_sets = ["built-in", "real (alsa)"] if alsa_speech_files() else ["built-in"]
    assert list(sets) == expected_sets
    for rows in sets.values():
        assert list(rows) == ["noisy", "predictive (storm N=0)", "storm N=2"]
        for name, r in rows.items():
            assert all(np.isfinite(r[m]) for m in ("pesq", "estoi", "si_sdr")), (name, r)
            assert (r["rtf"] is None) == (name == "noisy")
    # each set's table is in the report, and the enhanced audio is written beside it
    assert report.count("| noisy |") == len(sets) and "| storm N=2 |" in report
    assert (run_dir / "speech" / "audio" / "test_00000_enhanced.wav").is_file()


def test_enhance_runs_the_ode_sampler_of_a_storm_model(work: Path, corpus: Path):
    from polydiff.speech.audio import load_audio
    from polydiff.speech.storm import StoRM

    args = (f"data_root={corpus}", "method=storm", *TINY_MODEL, "train.steps=2")
    train = ("train.batch_size=2", "train.num_frames=32", "trainer.accelerator=cpu")
    ok(run(work, "train", *args, *train, "hydra.run.dir=storm"))
    model = work / "storm" / "model"
    src = corpus / "test" / "noisy" / "test_00000.wav"
    opts = ("sampler=ode", "N=2", "seed=1", "subtype=FLOAT", "output=storm_ode.wav")
    ok(run(work, "enhance", f"model={model}", f"input={src}", *opts, "hydra.run.dir=e_ode"))
    report = json.loads((work / "e_ode" / "enhance.json").read_text())
    assert report["method"] == "storm" and report["sampler_options"] == {"sampler": "ode", "N": 2}
    expected = StoRM.load(model).enhance(load_audio(src)[0], int(SR), seed=1, sampler="ode", N=2)
    np.testing.assert_allclose(sf.read(work / "storm_ode.wav")[0], expected, atol=2e-5)
