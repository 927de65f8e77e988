"""The torch DWT: perfect reconstruction, PyWavelets' periodization coefficients, gradients."""

import doctest
import itertools

import numpy as np
import pytest
import pywt
import torch
from helpers import assert_close

import polydiff.pde.wavelets as wavelets_module
from polydiff.core.errors import InputError
from polydiff.pde.wavelets import WaveletTransform, dwt, idwt

WAVELETS = ["haar", "db2", "sym4", "coif1", "bior2.4", "bior1.3", "rbio2.2"]
SHAPES = {1: (3, 2, 16), 2: (2, 3, 8, 16), 3: (2, 1, 8, 4, 16)}


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("levels", [1, 2])
def test_perfect_reconstruction(wavelet, ndim, levels):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64)
    transform = WaveletTransform(wavelet, ndim, levels)
    coeffs = transform(x)
    scale = 2**levels
    expected = (*x.shape[: -ndim - 1], x.shape[-ndim - 1] * transform.bands)
    assert coeffs.shape == (*expected, *(s // scale for s in x.shape[-ndim:]))
    # PyWavelets gives sym4's taps to ~1e-12, the others to double precision
    assert_close(transform.inverse(coeffs), x, atol=1e-10 if wavelet == "sym4" else 1e-13)


def test_float32_reconstruction_and_batch_dims():
    x = torch.randn(2, 5, 3, 32, 16)  # two leading batch dims, 3 channels
    transform = WaveletTransform("bior2.4", ndim=2, levels=2)
    assert_close(transform.inverse(transform(x)), x, atol=1e-5)


@pytest.mark.parametrize("wavelet", WAVELETS)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_one_level_matches_pywt_periodization(wavelet, ndim):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64)
    ref = pywt.dwtn(x.numpy(), wavelet, mode="periodization", axes=tuple(range(-ndim, 0)))
    keys = ["".join(k) for k in itertools.product("ad", repeat=ndim)]
    expected = np.stack([ref[k] for k in keys], axis=-ndim - 1)  # [..., C, bands, *S]
    expected = expected.reshape(*x.shape[: -ndim - 1], -1, *expected.shape[-ndim:])
    assert_close(dwt(x, wavelet, ndim), torch.from_numpy(expected), atol=1e-12)


def test_short_signals_wrap_like_pywt():
    # bior2.4 has 10 taps: a length-4 axis wraps the filter more than once
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    ca, cd = pywt.dwt(x.numpy(), "bior2.4", mode="periodization")
    assert_close(dwt(x, "bior2.4", 1), torch.from_numpy(np.concatenate([ca, cd], 1)), atol=1e-12)


def test_two_levels_are_pywt_wavelet_packets():
    x = torch.randn(32, dtype=torch.float64)
    packet = pywt.WaveletPacket(x.numpy(), "db2", mode="periodization", maxlevel=2)
    expected = np.stack([packet[path].data for path in ("aa", "ad", "da", "dd")])
    assert_close(dwt(x[None], "db2", 1, levels=2), torch.from_numpy(expected), atol=1e-12)
    # the all-low channel of a 2D two-level transform is pywt's level-2 approximation
    image = torch.randn(1, 64, 64, dtype=torch.float64)  # large enough for 2 bior2.4 levels
    approx = pywt.wavedecn(image[0].numpy(), "bior2.4", mode="periodization", level=2)[0]
    assert_close(dwt(image, "bior2.4", 2, levels=2)[0], torch.from_numpy(approx), atol=1e-12)


def test_orthogonal_transform_preserves_energy():
    x = torch.randn(2, 1, 16, 32, dtype=torch.float64)
    assert_close(dwt(x, "db2", 2, 2).pow(2).sum(), x.pow(2).sum(), rtol=1e-12)


@pytest.mark.parametrize("wavelet", ["db2", "bior2.4"])
def test_gradients_pass_gradcheck(wavelet):
    transform = WaveletTransform(wavelet, ndim=2, levels=1)
    x = torch.randn(1, 1, 4, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(transform, (x,))
    c = torch.randn(1, 4, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(transform.inverse, (c,))


def test_functional_inverse_and_module_docstring():
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    assert_close(idwt(dwt(x, "sym3", 2), "sym3", 2), x, atol=1e-12)
    failures, tried = doctest.testmod(wavelets_module, extraglobs={"torch": torch})
    assert tried > 0 and failures == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: dwt(torch.randn(1, 1, 8, 12), "haar", 2, levels=3),
            r"^levels: .* 2\*\*levels = 8",
        ),
        (lambda: dwt(torch.randn(1, 1, 41, 60), "bior2.4", 2), r"^levels: the transformed sizes"),
        (lambda: dwt(torch.randn(8), "haar", 1), r"^x: expected"),
        (lambda: WaveletTransform("nope"), r"^wavelet: 'nope'"),
        (lambda: WaveletTransform("morl"), r"^wavelet: 'morl'"),
        (lambda: WaveletTransform("haar", ndim=4), r"^ndim:"),
        (lambda: WaveletTransform("haar", levels=0), r"^levels:"),
        (lambda: idwt(torch.randn(1, 3, 4, 4), "haar", 2), r"^coeffs: expected"),
    ],
)
def test_bad_options_raise_input_error(call, message):
    with pytest.raises(InputError, match=message):
        call()
