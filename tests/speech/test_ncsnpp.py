"""NCSN++: parameter counts of the papers' sizes, shapes, FIR resampling, conditioning, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import upfirdn

from polydiff.speech.nets import PRESETS, NCSNpp, NCSNppConfig
from polydiff.speech.nets.ncsnpp import (
    channels_to_spec,
    count_parameters,
    fir_downsample,
    fir_upsample,
    spec_to_channels,
)


@pytest.mark.parametrize(("name", "millions"), [("ncsnpp_m", 27.8), ("ncsnpp", 65.6)])
def test_parameter_counts_match_the_papers(name, millions):
    model = NCSNpp(PRESETS[name])
    assert count_parameters(model) / 1e6 == pytest.approx(millions, abs=0.05)


def _separable(x: np.ndarray, up: int, down: int, gain: float) -> np.ndarray:
    k = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0 * gain
    rows = np.stack([upfirdn(k, r, up, down) for r in x])
    return np.stack([upfirdn(k, c, up, down) for c in rows.T]).T


def test_fir_resampling_matches_scipy_upfirdn():
    x = np.random.default_rng(0).standard_normal((8, 12))
    xt = torch.from_numpy(x)[None, None]
    down = fir_downsample(xt)[0, 0].numpy()
    np.testing.assert_allclose(down, _separable(x, 1, 2, 1.0)[1:5, 1:7], atol=1e-12)
    up = fir_upsample(xt)[0, 0].numpy()
    np.testing.assert_allclose(up, _separable(x, 2, 1, 2.0)[1:17, 1:25], atol=1e-12)
    ones = torch.ones(1, 3, 16, 16, dtype=torch.float64)
    np.testing.assert_allclose(fir_upsample(ones)[..., 2:-2, 2:-2], 1.0)
    np.testing.assert_allclose(fir_downsample(ones)[..., 1:-1, 1:-1], 1.0)


def _randomized(cfg: NCSNppConfig) -> NCSNpp:
    """A micro net with random (non-zero) weights so every path influences the output."""
    torch.manual_seed(0)
    model = NCSNpp(cfg).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0.0, 0.1)
    return model


def test_shapes_time_conditioning_and_batch_independence():
    cfg = NCSNppConfig(nf=8, ch_mult=(1, 2, 2), attn_resolutions=(128,))
    model = _randomized(cfg)
    x = torch.randn(3, 4, 32, 16, dtype=torch.float64)
    t = torch.tensor([0.9, 0.5, 0.05], dtype=torch.float64)
    with torch.no_grad():
        out = model(x, t)
        assert out.shape == (3, 2, 32, 16) and torch.isfinite(out).all()
        single = model(x[1:2], t[1:2])
        np.testing.assert_allclose(out[1:2], single, atol=1e-10)
        other_t = model(x[1:2], torch.tensor([0.3], dtype=torch.float64))
    assert (other_t - single).abs().max() > 1e-6  # exactly 0 if t were ignored


def test_default_init_starts_near_a_constant_output():
    # init_scale 0 on the last conv of each block and on the output pyramid (Song et al.).
    model = NCSNpp(PRESETS["micro"]).eval()
    with torch.no_grad():
        a = model(torch.randn(1, 4, 64, 64), torch.tensor([0.5]))
        b = model(torch.randn(1, 4, 64, 64), torch.tensor([0.1]))
    assert (a - b).abs().max() < 1e-3 * a.abs().max()


def test_unconditional_predictive_net_and_input_checks():
    cfg = NCSNppConfig(nf=8, ch_mult=(1, 2), in_channels=2, conditional=False)
    model = NCSNpp(cfg)
    y = torch.randn(2, 256, 8, dtype=torch.complex64)
    out = channels_to_spec(model(spec_to_channels(y)))
    assert out.shape == y.shape and out.is_complex()
    conditional = NCSNpp(NCSNppConfig(nf=8, ch_mult=(1, 2)))
    with pytest.raises(ValueError, match="pass t"):
        conditional(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="multiples of 2"):
        conditional(torch.randn(1, 4, 8, 7), torch.ones(1))
    with pytest.raises(ValueError, match=r"expected \(B, 4"):
        conditional(torch.randn(1, 2, 8, 8), torch.ones(1))


def test_complex_channel_packing_round_trip():
    x, y = torch.randn(2, 5, 6, dtype=torch.complex64), torch.randn(2, 5, 6, dtype=torch.complex64)
    ch = spec_to_channels(x, y)
    assert ch.shape == (2, 4, 5, 6)
    assert torch.equal(channels_to_spec(ch[:, :2]), x) and torch.equal(
        channels_to_spec(ch[:, 2:]), y
    )
