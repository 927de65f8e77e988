"""Chunked processing equals whole-signal processing for local operators; memory stays bounded."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from polydiff.speech.audio import PRESETS, load_audio, to_audio, to_spec
from polydiff.speech.chunking import (
    chunk_weights,
    enhance_chunked,
    enhance_file,
    overlap_add_apply,
    plan_chunks,
)

CFG = PRESETS["16k"]


@pytest.mark.parametrize(
    ("length", "chunk", "margin", "fade", "align"),
    [
        (10_000, 1000, 100, 50, 1),
        (10_001, 1024, 300, 128, 128),
        (50, 100, 10, 5, 1),
        (3000, 999, 0, 1, 7),
    ],
)
def test_plan_covers_the_signal_and_weights_sum_to_one(length, chunk, margin, fade, align):
    chunks = plan_chunks(length, chunk, margin, fade, align)
    total = torch.zeros(length, dtype=torch.float64)
    for i, c in enumerate(chunks):
        assert c.start % align == 0 and c.stop - c.start <= chunk
        w = chunk_weights(chunks, i)
        assert torch.all(w >= 0) and torch.all(w <= 1)
        total[c.start : c.stop] += w
    np.testing.assert_allclose(total, torch.ones(length, dtype=torch.float64), rtol=0, atol=1e-15)
    assert chunks[0].start == 0 and chunks[-1].stop == length


def test_plan_errors():
    with pytest.raises(ValueError, match="too short"):
        plan_chunks(10_000, 300, 100, 100)
    with pytest.raises(ValueError, match="need length"):
        plan_chunks(0, 300, 10, 10)


def _spectral_gain(x: torch.Tensor) -> torch.Tensor:
    """A per-frame operator: a complex gain per frequency bin on the compressed spectrogram.

    Random phases give it an impulse response as long as a frame, so chunk edges would show.
    """
    g = torch.Generator().manual_seed(0)
    mag = torch.rand(CFG.n_freqs, dtype=torch.float64, generator=g) + 0.2
    gain = mag * torch.exp(
        2j * torch.pi * torch.rand(CFG.n_freqs, dtype=torch.float64, generator=g)
    )
    S = to_spec(x, CFG)
    return to_audio(gain[:, None] * S, CFG, x.shape[-1])


@pytest.mark.parametrize("batch_size", [1, 3])
def test_chunked_equals_whole_file_for_per_frame_operator(batch_size):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(0.3 * rng.standard_normal((2, 16000 * 5 + 77)))
    whole = _spectral_gain(x)
    chunked = enhance_chunked(
        _spectral_gain, x, CFG, chunk_seconds=1.0, margin_seconds=0.05, batch_size=batch_size
    )
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-10)
    # Without enough context margin the chunk edges show (so the test can fail).
    bad = enhance_chunked(_spectral_gain, x, CFG, chunk_seconds=1.0, margin_seconds=0.0)
    assert (bad - whole).abs().max() > 1e-5


def test_identity_and_pointwise_maps_are_exact():
    x = torch.randn(3, 20_000, dtype=torch.float64)
    y = overlap_add_apply(lambda b: b, x, 4096, 0, 300)
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-15)
    y = overlap_add_apply(torch.tanh, x, 4096, 0, 300, batch_size=4)
    np.testing.assert_allclose(y, torch.tanh(x), rtol=0, atol=1e-15)


def test_spectrogram_chunking_over_frames_is_exact():
    S = torch.randn(2, 256, 700, dtype=torch.complex128)
    gain = torch.rand(256, 1, dtype=torch.float64) + 0.5

    def fn(b):
        assert b.shape[1:-1] == (256,) and b.shape[0] % 2 == 0
        return gain * b

    np.testing.assert_allclose(overlap_add_apply(fn, S, 128, 8, 16, batch_size=2), gain * S)


def test_short_file_is_one_call_and_normalisation_is_global():
    calls = []

    def fn(b):
        calls.append(b.clone())
        return 2 * b

    x = torch.linspace(-0.5, 0.25, 8000)
    y = enhance_chunked(fn, x, CFG)
    assert len(calls) == 1 and calls[0].abs().max() == 1.0
    np.testing.assert_allclose(y, 2 * x)
    assert torch.equal(enhance_chunked(fn, torch.zeros(1000), CFG), torch.zeros(1000))


def test_long_file_memory_is_bounded_by_the_chunk():
    sizes = []

    def fn(b):
        sizes.append(b.numel())
        return b

    x = torch.randn(16000 * 120)  # two minutes
    y = enhance_chunked(fn, x, CFG, chunk_seconds=4.0, batch_size=2)
    assert max(sizes) <= 2 * 4 * 16000 + 2 * CFG.hop_length
    assert len(sizes) > 10
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-5)  # float32 rounding of the cross-fades


def test_bad_input_and_nan_output():
    with pytest.raises(ValueError, match="NaN"):
        enhance_chunked(lambda b: b, torch.tensor([0.1, float("nan")]), CFG)
    with pytest.raises(ValueError, match="enhancer produced NaN"):
        enhance_chunked(lambda b: b * float("nan"), torch.ones(500), CFG)
    with pytest.raises(ValueError, match="returned shape"):
        enhance_chunked(lambda b: b[..., :-1], torch.ones(500), CFG)
    with pytest.raises(ValueError, match="expected"):
        enhance_chunked(lambda b: b, torch.ones(1, 2, 3), CFG)


@pytest.mark.parametrize("sr_in", [16000, 22050, 44100, 48000, 8000])
def test_resampled_reader_blocks_equal_whole_file_resampling(tmp_path, sr_in):
    from scipy.signal import resample_poly

    from polydiff.speech.chunking import _ResampledReader

    x = np.random.default_rng(1).standard_normal((2, sr_in * 2 + 13))
    sf.write(tmp_path / "x.wav", x.T, sr_in, "DOUBLE")
    g = np.gcd(sr_in, 16000)
    full = resample_poly(x.mean(0), 16000 // g, sr_in // g)
    with sf.SoundFile(tmp_path / "x.wav") as f:
        reader = _ResampledReader(f, 16000, "mix")
        assert reader.length == full.size
        for a, b in [(0, 100), (5000, 9001), (12345, 20000), (full.size - 777, full.size)]:
            np.testing.assert_allclose(reader.read(a, b)[0], full[a:b], rtol=0, atol=1e-12)


@pytest.mark.parametrize(("sr_in", "channels"), [(16000, "mix"), (44100, "mix"), (16000, "all")])
def test_streamed_file_equals_in_memory_chunked(tmp_path, sr_in, channels):
    x = 0.2 * np.random.default_rng(2).standard_normal((2, int(sr_in * 3.3)))
    sf.write(tmp_path / "in.wav", x.T, sr_in, "FLOAT")
    sizes = []

    def fn(b):
        sizes.append(b.shape[-1])
        return _spectral_gain(b.double())

    out = enhance_file(
        fn,
        tmp_path / "in.wav",
        tmp_path / "out.wav",
        CFG,
        chunk_seconds=1.0,
        margin_seconds=0.05,
        channels=channels,
        subtype="FLOAT",
        out_rate=16000,
    )
    y, sr = sf.read(out, always_2d=True)
    audio, _ = load_audio(tmp_path / "in.wav", 16000, channels=channels)
    ref = enhance_chunked(_spectral_gain, torch.from_numpy(audio).double(), CFG, 1.0, 0.05)
    assert sr == 16000 and y.shape == (ref.shape[-1], 2 if channels == "all" else 1)
    np.testing.assert_allclose(y.T.squeeze(0) if channels == "mix" else y.T, ref, atol=2e-5)
    assert max(sizes) <= 16000 + CFG.hop_length and len(sizes) > 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("sr_in", "channels"), [(48000, "mix"), (44100, "all"), (8000, "mix")])
def test_output_is_written_at_the_input_rate(tmp_path, sr_in, channels):
    """The default output rate is the input's: the model-rate result, resampled; a rate above
    the model's warns that the top band is empty (issue 14: audio in the user's band)."""
    from scipy.signal import resample_poly

    x = 0.2 * np.random.default_rng(3).standard_normal((2, int(sr_in * 2.1)))
    sf.write(tmp_path / "in.wav", x.T, sr_in, "FLOAT")
    kwargs = dict(chunk_seconds=1.0, margin_seconds=0.05, channels=channels, subtype="FLOAT")
    model = enhance_file(
        _spectral_gain, tmp_path / "in.wav", tmp_path / "m.wav", CFG, out_rate=16000, **kwargs
    )
    if sr_in > 16000:
        with pytest.warns(UserWarning, match=f"input's {sr_in} Hz.*no content above 8000 Hz"):
            out = enhance_file(
                _spectral_gain, tmp_path / "in.wav", tmp_path / "o.wav", CFG, **kwargs
            )
    else:
        out = enhance_file(_spectral_gain, tmp_path / "in.wav", tmp_path / "o.wav", CFG, **kwargs)
    y, sr = sf.read(out, always_2d=True)
    m, _ = sf.read(model, always_2d=True)
    g = np.gcd(sr_in, 16000)
    ref = resample_poly(m, sr_in // g, 16000 // g, axis=0)
    assert sr == sr_in and y.shape == ref.shape and abs(y.shape[0] - x.shape[1]) <= 1
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "m.wav", "o.wav"]


def test_streamed_file_errors_leave_nothing(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(4000), 16000)
    with pytest.raises(ValueError, match="silence"):
        enhance_file(lambda b: b, tmp_path / "s.wav", tmp_path / "o.wav")
    sf.write(tmp_path / "x.wav", 0.1 * np.ones(40000), 16000)
    with pytest.raises(ValueError, match="NaN"):
        enhance_file(lambda b: b * np.nan, tmp_path / "x.wav", tmp_path / "o.wav")
    with pytest.raises(ValueError, match="full scale"):
        enhance_file(lambda b: 30 * b, tmp_path / "x.wav", tmp_path / "o.wav", on_clip="error")
    with pytest.raises(FileNotFoundError, match=r"nope\.wav"):
        enhance_file(lambda b: b, tmp_path / "nope.wav", tmp_path / "o.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.wav", "x.wav"]
    enhance_file(lambda b: 0.5 * b, tmp_path / "x.wav", tmp_path / "o.wav")
    np.testing.assert_allclose(sf.read(tmp_path / "o.wav")[0], 0.05, atol=1 / 2**15)
    with pytest.warns(UserWarning, match="40000 samples above full scale were clipped"):
        enhance_file(lambda b: 30 * b, tmp_path / "x.wav", tmp_path / "c.wav")
    np.testing.assert_allclose(sf.read(tmp_path / "c.wav")[0], 1.0, atol=1 / 2**15)


def test_a_clipped_input_file_is_enhanced_with_a_warning(tmp_path, speech):
    x = np.clip(3 * speech(1.0, 16000, 0), -1, 1)  # a recording driven into clipping
    assert np.mean(np.abs(x) >= 0.999) > 0.01
    sf.write(tmp_path / "clipped.wav", x, 16000, subtype="PCM_16")
    with pytest.warns(UserWarning, match=r"clipped\.wav: .*% of samples are at full scale"):
        enhance_file(lambda b: 0.5 * b, tmp_path / "clipped.wav", tmp_path / "o.wav")
    out = sf.read(tmp_path / "o.wav")[0]
    assert np.isfinite(out).all() and out.shape == x.shape
    np.testing.assert_allclose(out, 0.5 * x, atol=2 / 2**15)
