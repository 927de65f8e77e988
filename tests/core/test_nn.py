"""polydiff.core.nn: embeddings, FiLM, residual / attention blocks, adaLN transformer block and
the 1-D temporal U-Net with per-position noise levels."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close

from polydiff.core.nn import (
    Attention,
    FiLM,
    GaussianFourierProjection,
    ResBlock,
    SelfAttention,
    TemporalUNet,
    TemporalUNetConfig,
    TimeMLP,
    TransformerBlock,
    attend_positions,
    rotary_cos_sin,
    sinusoidal_embedding,
)

SMALL = TemporalUNetConfig(in_channels=3, channels=8, channel_mult=(1, 2), cond_dim=4)
# kernel 1 and LayerNorm: a position only meets the positions of its own block of 2**levels
LOCAL = TemporalUNetConfig(
    in_channels=2, channels=8, channel_mult=(1, 2, 2), kernel_size=1, norm="layer"
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unet(config: TemporalUNetConfig, seed: int = 0) -> TemporalUNet:
    torch.manual_seed(seed)
    return TemporalUNet(config).eval()


# --- embeddings ---------------------------------------------------------------------------------


def test_sinusoidal_embedding_values_and_shapes():
    e = sinusoidal_embedding(torch.tensor([0.0, 2.0]), 8)
    assert e.shape == (2, 8) and e.dtype == torch.float32
    assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.tensor([10_000.0 ** (-i / 4) for i in range(4)])
    assert_close(e[1], torch.cat(((2 * freqs).cos(), (2 * freqs).sin())), rtol=1e-6, atol=1e-6)
    # scale multiplies t; a per-position [B, L] time gets one embedding per position
    t = torch.rand(3, 5, generator=_gen())
    per_position = sinusoidal_embedding(t, 6, scale=1000.0)
    assert per_position.shape == (3, 5, 6)
    assert_close(per_position[1, 2], sinusoidal_embedding(1000.0 * t[1, 2], 6))
    with pytest.raises(ValueError, match="even"):
        sinusoidal_embedding(t, 5)


def test_gaussian_fourier_projection():
    torch.manual_seed(0)
    proj = GaussianFourierProjection(4, scale=2.0)
    assert not proj.W.requires_grad and list(proj.state_dict()) == ["W"]
    s = torch.tensor([[0.5, -1.0]])
    out = proj(s)
    assert out.shape == (1, 2, 8)
    angle = 2 * math.pi * 0.5 * proj.W
    assert_close(out[0, 0], torch.cat((angle.sin(), angle.cos())))


def test_time_mlp_keys_and_custom_linear():
    mlp = TimeMLP(4, 16, 8, linear=lambda i, o: torch.nn.Linear(i, o, bias=False))
    assert list(mlp.state_dict()) == ["0.weight", "2.weight"]
    assert mlp(torch.zeros(2, 4)).shape == (2, 8)


# --- FiLM and blocks ----------------------------------------------------------------------------


def test_film_zero_init_is_identity_and_per_position_matches_per_sample():
    h = torch.randn(2, 3, 5, generator=_gen())
    c = torch.randn(2, 4, generator=_gen(1))
    film = FiLM(4, 3, zero_init=True)
    assert torch.equal(film(h, c), h)
    assert torch.equal(film(h, c[:, None].expand(2, 5, 4)), h)
    film = FiLM(4, 3)
    out = film(h, c)
    assert not torch.allclose(out, h)
    params = c @ film.weight.T + film.bias
    assert_close(out, h * (1 + params[:, :3, None]) + params[:, 3:, None], rtol=1e-6, atol=1e-6)
    # one condition per position, all equal, is the per-sample condition
    assert_close(film(h, c[:, None].expand(2, 5, 4)), out, rtol=1e-6, atol=1e-6)
    # a condition per position modulates that position only
    c_pos = c[:, None].expand(2, 5, 4).clone()
    c_pos[:, 3] += 1.0
    moved = (film(h, c_pos) - out).abs().amax(dim=(0, 1))
    assert moved[3] > 1e-3 and moved[[0, 1, 2, 4]].max() < 1e-6


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_resblock_shapes(dims):
    torch.manual_seed(0)
    block = ResBlock(8, 16, 12, groups=4, dims=dims)
    x = torch.randn(2, 8, *[4] * dims)
    emb = torch.randn(2, 12)
    out = block(x, emb)
    assert out.shape == (2, 16, *[4] * dims)
    assert not torch.allclose(out, block(x, emb + 1.0))  # the embedding conditions the block
    assert isinstance(ResBlock(8, 8, 12, groups=4, dims=dims).skip, torch.nn.Identity)


def test_resblock_per_position_embedding_and_bad_arguments():
    torch.manual_seed(0)
    block = ResBlock(4, 4, 6, groups=2, dims=1, kernel_size=1, norm="layer")
    x, emb = torch.randn(2, 4, 7), torch.randn(2, 6)
    assert_close(block(x, emb[:, None].expand(2, 7, 6)), block(x, emb), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="dims=4"):
        ResBlock(8, 8, 6, dims=4)
    with pytest.raises(ValueError, match="norm='batch'"):
        ResBlock(8, 8, 6, norm="batch")


def test_attend_positions_is_multi_head_attention():
    b, c, heads, n = 2, 8, 2, 6
    qkv = torch.randn(b, 3 * c, 2, 3, generator=_gen())
    out = attend_positions(qkv, heads)
    assert out.shape == (b, c, 2, 3)
    q, k, v = qkv.reshape(b, 3, heads, c // heads, n).unbind(1)  # [b, heads, d, n]
    weights = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(c // heads), dim=-1)
    expected = (weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(b, c, 2, 3)
    assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_self_attention_is_permutation_equivariant():
    torch.manual_seed(0)
    attn = SelfAttention(64, groups=8, dims=1)
    assert attn.heads == 2
    x = torch.randn(2, 64, 10, generator=_gen())
    perm = torch.randperm(10, generator=_gen(1))
    assert_close(attn(x[..., perm]), attn(x)[..., perm], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="heads"):
        SelfAttention(64, heads=3)


# --- transformer ----------------------------------------------------------------------------


def test_attention_with_kv_cache_equals_one_causal_pass():
    torch.manual_seed(0)
    attn = Attention(16, 4)
    x = torch.randn(2, 6, 16, generator=_gen())
    cos, sin = rotary_cos_sin(torch.arange(6), 4)
    full, (k, v) = attn(x, cos, sin, is_causal=True)
    assert k.shape == v.shape == (2, 4, 6, 4)
    first, past = attn(x[:, :4], cos[:4], sin[:4], is_causal=True)
    second, _ = attn(
        x[:, 4:], cos[4:], sin[4:], attn_mask=torch.ones(2, 6).tril(4).bool(), past=past
    )
    assert_close(torch.cat((first, second), 1), full, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="n_heads"):
        Attention(16, 3)


def test_adaln_zero_block_starts_as_identity_and_conditions_per_token():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cond_dim=8)
    assert not block.norm1.elementwise_affine
    x, c = torch.randn(2, 5, 16, generator=_gen()), torch.randn(2, 8, generator=_gen(1))
    out, _ = block(x, c)
    assert torch.equal(out, x)  # adaLN-Zero: zero gates
    torch.nn.init.normal_(block.modulation.weight, std=0.1)
    out, _ = block(x, c)
    assert not torch.allclose(out, x)
    per_token, _ = block(x, c[:, None].expand(2, 5, 8))
    assert_close(per_token, out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pass c"):
        block(x)
    plain = TransformerBlock(16, 4)
    assert plain.modulation is None and plain(x)[0].shape == x.shape


# --- temporal U-Net -----------------------------------------------------------------------------


def test_temporal_unet_shapes_and_time_forms():
    net = _unet(SMALL)
    x = torch.randn(2, 8, 3, generator=_gen())
    cond = torch.randn(2, 4, generator=_gen(1))
    per_sample = net(x, torch.tensor([0.3, 0.3]), cond)
    assert per_sample.shape == (2, 8, 3)
    assert torch.equal(net(x, 0.3, cond), per_sample)  # a scalar is shared by the batch
    assert torch.equal(net(x, torch.tensor(0.3), cond), per_sample)
    # equal levels at every position are the per-sample call
    assert_close(net(x, torch.full((2, 8), 0.3), cond), per_sample, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(net(x, 0.7, cond), per_sample)
    assert not torch.allclose(net(x, 0.3, cond + 1.0), per_sample)  # the condition matters
    wide = TemporalUNet(TemporalUNetConfig(in_channels=3, out_channels=5, channels=8))
    assert wide(torch.randn(1, 12, 3), 0.5).shape == (1, 12, 5)


def test_temporal_unet_per_position_level_matters_only_where_it_reaches():
    net = _unet(LOCAL)
    assert LOCAL.multiple == 4
    x = torch.randn(2, 12, 2, generator=_gen())
    t = torch.rand(2, 12, generator=_gen(1))
    out = net(x, t)
    t2 = t.clone()
    t2[:, 5] = 0.9 if t[0, 5] < 0.5 else 0.1  # position 5 lies in the block of 4..7
    moved = (net(x, t2) - out).abs().amax(dim=(0, 2))
    assert moved[4:8].min() > 1e-4, moved
    assert moved[:4].max() < 1e-6 and moved[8:].max() < 1e-6, moved
    # one sample's levels do not reach another sample
    t3 = t.clone()
    t3[1] = 0.5
    assert_close(net(x, t3)[0], out[0], rtol=1e-5, atol=1e-6)


def test_temporal_unet_rejects_bad_inputs():
    net = _unet(SMALL)
    x, cond = torch.randn(2, 8, 3), torch.randn(2, 4)
    with pytest.raises(ValueError, match="multiple of 2"):
        net(torch.randn(2, 7, 3), 0.5, cond)
    with pytest.raises(ValueError, match="t has shape"):
        net(x, torch.rand(2, 4), cond)
    with pytest.raises(ValueError, match="cond must be"):
        net(x, 0.5)
    with pytest.raises(ValueError, match="kernel_size"):
        TemporalUNetConfig(in_channels=3, kernel_size=4)
    with pytest.raises(ValueError, match="groups"):
        TemporalUNetConfig(in_channels=3, channels=12)


def test_temporal_unet_config_round_trip():
    config = TemporalUNetConfig(in_channels=3, channel_mult=(1, 2), norm="layer", cond_dim=2)
    data = config.to_dict()
    assert data["channel_mult"] == [1, 2]
    assert TemporalUNetConfig.from_dict(data) == config


# --- compile and dtype --------------------------------------------------------------------------


def test_compile_fullgraph_unet_and_transformer_block():
    net = _unet(SMALL)
    x, cond = torch.randn(2, 8, 3, generator=_gen()), torch.randn(2, 4, generator=_gen(1))
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    for t in (0.4, torch.rand(2, generator=_gen(2)), torch.rand(2, 8, generator=_gen(3))):
        assert_close(compiled(x, t, cond), net(x, t, cond), rtol=1e-5, atol=1e-6)

    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cond_dim=8)
    torch.nn.init.normal_(block.modulation.weight, std=0.1)
    h, c = torch.randn(2, 5, 16, generator=_gen()), torch.randn(2, 5, 8, generator=_gen(1))
    cos, sin = rotary_cos_sin(torch.arange(5), 4)
    step = torch.compile(block, fullgraph=True, backend="eager")
    got, (k, _) = step(h, c, cos=cos, sin=sin, is_causal=True)
    expected, (k_ref, _) = block(h, c, cos=cos, sin=sin, is_causal=True)
    assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert_close(k, k_ref, rtol=1e-5, atol=1e-6)


def test_layers_run_in_float64():
    net = _unet(SMALL)
    x, cond = torch.randn(2, 8, 3, generator=_gen()), torch.randn(2, 4, generator=_gen(1))
    t = torch.rand(2, 8, generator=_gen(2))
    out32 = net(x, t, cond)
    out64 = net.double()(x.double(), t.double(), cond.double())
    assert out64.dtype == torch.float64
    assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)

    torch.manual_seed(0)
    block = TransformerBlock(16, 4, cond_dim=8).double()
    h = torch.randn(2, 5, 16, dtype=torch.float64, generator=_gen())
    cos, sin = rotary_cos_sin(torch.arange(5), 4)
    out, (k, v) = block(h, torch.randn(2, 8, dtype=torch.float64), cos=cos, sin=sin)
    assert out.dtype == k.dtype == v.dtype == torch.float64
    attn = SelfAttention(32, groups=8).double()
    img = torch.randn(1, 32, 4, 4, dtype=torch.float64)
    res = ResBlock(32, 16, 6, groups=4).double()
    assert attn(img).dtype == torch.float64
    assert res(img, torch.randn(1, 6, dtype=torch.float64)).dtype == torch.float64
