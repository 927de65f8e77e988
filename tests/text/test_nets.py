"""Transformers of polydiff.text: masks, rotary, attention structure, exact KV caches."""

from __future__ import annotations

import pytest
import torch

from polydiff.text.nets import (
    CausalTransformer,
    DiffusionTransformer,
    TransformerConfig,
    apply_rotary,
    block_causal_mask,
    block_diffusion_mask,
    rotary_cos_sin,
)

V, L = 11, 12


def tiny_config(**overrides) -> TransformerConfig:
    base = dict(vocab_size=V, d_model=32, n_layers=2, n_heads=4, max_seq_len=64)
    return TransformerConfig(**{**base, **overrides})


def perturb_modulation(model: torch.nn.Module) -> None:
    """adaLN-Zero starts as identity; give the modulation weights values so t matters."""
    gen = torch.Generator().manual_seed(1)
    for block in model.backbone.blocks:
        if block.modulation is not None:
            block.modulation.weight.data = 0.1 * torch.randn(
                block.modulation.weight.shape, generator=gen, dtype=block.modulation.weight.dtype
            )


def make(cls, dtype=torch.float64, seed=0, **overrides):
    torch.manual_seed(seed)
    model = cls(tiny_config(**overrides)).to(dtype).eval()
    perturb_modulation(model)
    return model


# ---- masks -----------------------------------------------------------------------------------


def test_block_diffusion_mask_by_hand():
    # L = 4, block size 2: x_t blocks {0,1},{2,3}; x_0 blocks {4,5},{6,7}
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0, 0, 0],  # x_t block 0: itself only
            [1, 1, 0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],  # x_t block 1: itself + clean block 0
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 0, 0],  # x_0 block 0: block-causal
            [0, 0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 1],
            [0, 0, 0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_diffusion_mask(4, 2), expected)


def test_block_causal_mask_limits():
    assert torch.equal(block_causal_mask(5, 1), torch.ones(5, 5, dtype=torch.bool).tril())
    assert block_causal_mask(5, 5).all()
    with pytest.raises(ValueError, match="block_size"):
        block_causal_mask(5, 0)


# ---- config and building blocks --------------------------------------------------------------


def test_default_size_is_about_two_million_parameters():
    config = TransformerConfig(vocab_size=260)
    n = CausalTransformer(config).num_parameters()
    assert 1.5e6 < n < 3e6
    assert DiffusionTransformer(config).num_parameters() == n  # same size, same architecture
    assert TransformerConfig.from_dict(config.to_dict()) == config
    # larger by config: 12 d^2 per layer (attention 4 d^2 + MLP 8 d^2) plus embeddings
    bigger = TransformerConfig(vocab_size=260, d_model=384, n_layers=6, n_heads=6)
    assert 12 * 6 * 384**2 < CausalTransformer(bigger).num_parameters() < 13 * 6 * 384**2


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of n_heads"):
        TransformerConfig(vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="time_conditioning"):
        TransformerConfig(vocab_size=10, time_conditioning="film")
    with pytest.raises(ValueError, match="unknown TransformerConfig fields"):
        TransformerConfig.from_dict({"vocab_size": 10, "width": 3})
    with pytest.raises(ValueError, match="no time conditioning"):
        CausalTransformer(tiny_config(time_conditioning="adaln"))


def test_rotary_scores_depend_only_on_relative_position():
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 16, generator=gen, dtype=torch.float64)

    def score(p_q: int, p_k: int) -> torch.Tensor:
        cq, sq = rotary_cos_sin(torch.tensor([p_q]), 16)
        ck, sk = rotary_cos_sin(torch.tensor([p_k]), 16)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum()

    assert torch.allclose(score(3, 1), score(10, 8), atol=1e-5)
    assert torch.allclose(score(0, 0), (q * k).sum())  # position 0 is the identity
    assert not torch.allclose(score(3, 1), score(1, 3), atol=1e-3)


# ---- attention structure ---------------------------------------------------------------------


def test_denoiser_is_bidirectional_and_causal_model_is_not():
    x = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % V
    denoiser, causal = make(DiffusionTransformer), make(CausalTransformer)
    assert not torch.allclose(denoiser(x)[:, 0], denoiser(y)[:, 0])
    assert torch.allclose(causal(x)[:, :-1], causal(y)[:, :-1], atol=1e-12)
    assert not torch.allclose(causal(x)[:, -1], causal(y)[:, -1])


@pytest.mark.parametrize("conditioning", ["adaln", "add"])
def test_time_conditioning(conditioning):
    model = make(DiffusionTransformer, time_conditioning=conditioning)
    x = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.3])
    out = model(x, t)
    assert out.shape == (2, L, V)
    assert not torch.allclose(out, model(x, torch.tensor([0.7, 0.7])))
    # a per-sequence time equals the same time given to every token
    assert torch.allclose(out, model(x, t[:, None].expand(2, L)), atol=1e-12)
    with pytest.raises(ValueError, match="pass t"):
        model(x)


def test_too_long_input_is_an_error():
    model = make(CausalTransformer, max_seq_len=8)
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))


# ---- causal KV cache -------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_causal_kv_cache_equals_full_forward(dtype, atol):
    model = make(CausalTransformer, dtype=dtype)
    x = torch.randint(0, V, (3, L), generator=torch.Generator().manual_seed(2))
    full = model(x)
    # prefill 5 tokens, then one token at a time, then a chunk of 3
    logits, cache = model.forward_cached(x[:, :5])
    pieces = [logits]
    for i in range(5, 9):
        logits, cache = model.forward_cached(x[:, i : i + 1], cache)
        pieces.append(logits)
    logits, cache = model.forward_cached(x[:, 9:], cache)
    pieces.append(logits)
    assert cache.length == L
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=atol)
    # reindexing the cache along the batch reindexes the continuation
    idx = torch.tensor([2, 0])
    cont, _ = model.forward_cached(
        x[idx, -1:], model.forward_cached(x[:, :-1])[1].index_select(idx)
    )
    assert torch.allclose(cont[:, 0], full[idx, -1], atol=atol)


def test_greedy_generation_with_cache_matches_recomputation():
    model = make(CausalTransformer)
    prompt = torch.randint(0, V, (2, 3), generator=torch.Generator().manual_seed(3))
    out = model.generate(prompt, max_new_tokens=6, temperature=0.0)
    assert out.shape == (2, 9) and torch.equal(out[:, :3], prompt)
    seq = prompt
    for _ in range(6):  # no cache: rerun the whole prefix each step
        seq = torch.cat((seq, model(seq)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, seq)
    sampled = model.generate(prompt, 6, generator=torch.Generator().manual_seed(0))
    again = model.generate(prompt, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, again) and sampled.max() < V
    # banned ids are never drawn, greedy or sampled: here everything but ids 3 and 7
    banned = tuple(i for i in range(V) if i not in (3, 7))
    for temperature in (0.0, 1.0, 5.0):
        new = model.generate(prompt, 12, temperature, torch.Generator().manual_seed(1),
                             banned=banned)[:, 3:]  # fmt: skip
        assert set(new.unique().tolist()) <= {3, 7}


# ---- block diffusion: exact KV cache for completed blocks ------------------------------------


def uncached_block_logits(model, x0, x_t_block, b, block_size, t=None):
    """Recompute everything: clean prefix blocks + the noisy block under a block-causal mask."""
    seq = torch.cat((x0[:, : b * block_size], x_t_block), dim=1)
    t_tokens = None
    if t is not None:
        t_tokens = torch.zeros(seq.shape, dtype=torch.float64)
        t_tokens[:, b * block_size :] = t[:, None]
    mask = block_causal_mask(seq.shape[1], block_size)
    return model(seq, t_tokens, attn_mask=mask)[:, -block_size:]


@pytest.mark.parametrize("conditioning", ["none", "adaln", "add"])
def test_block_diffusion_cache_equals_training_forward(conditioning):
    block_size, mask_id = 4, V - 1
    model = make(DiffusionTransformer, time_conditioning=conditioning)
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randint(0, V - 1, (2, L), generator=gen)
    x_t = torch.where(torch.rand(2, L, generator=gen) < 0.5, mask_id, x0)
    t = torch.tensor([0.25, 0.8], dtype=torch.float64) if conditioning != "none" else None
    train_logits = model.forward_block_diffusion(x_t, x0, block_size, t)
    cache = None
    for b in range(L // block_size):
        block = slice(b * block_size, (b + 1) * block_size)
        cached = model.denoise_block(x_t[:, block], cache, t)
        uncached = uncached_block_logits(model, x0, x_t[:, block], b, block_size, t)
        assert torch.allclose(cached, train_logits[:, block], atol=1e-10)
        assert torch.allclose(uncached, train_logits[:, block], atol=1e-10)
        cache = model.cache_clean_block(x0[:, block], cache)
    assert cache.length == L


def test_block_diffusion_forward_sees_only_allowed_tokens():
    block_size = 4
    model = make(DiffusionTransformer)
    gen = torch.Generator().manual_seed(5)
    x0, x_t = torch.randint(0, V, (2, 1, L), generator=gen)
    base = model.forward_block_diffusion(x_t, x0, block_size)
    # changing clean block 1 affects noisy block 2 only; changing noisy block 0 affects block 0 only
    x0_changed = x0.clone()
    x0_changed[:, 5] = (x0_changed[:, 5] + 1) % V
    diff = (model.forward_block_diffusion(x_t, x0_changed, block_size) - base).abs().amax(-1)
    assert torch.equal(diff[0] > 1e-9, torch.tensor([False] * 8 + [True] * 4))
    x_t_changed = x_t.clone()
    x_t_changed[:, 1] = (x_t_changed[:, 1] + 1) % V
    diff = (model.forward_block_diffusion(x_t_changed, x0, block_size) - base).abs().amax(-1)
    assert torch.equal(diff[0] > 1e-9, torch.tensor([True] * 4 + [False] * 8))


def test_cached_and_uncached_block_sampling_agree():
    """A confidence-based block sampler (commit the 2 most confident masked tokens per step) run
    with the exact cache and by full recomputation: identical logits at every step, same text."""
    block_size, mask_id, n_blocks = 4, V - 1, L // 4
    model = make(DiffusionTransformer, dtype=torch.float32, time_conditioning="adaln")
    prompt = torch.randint(0, V - 1, (2, block_size), generator=torch.Generator().manual_seed(6))

    def sample(use_cache: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x0, seen = prompt.clone(), []
        cache = model.cache_clean_block(prompt) if use_cache else None
        for b in range(1, n_blocks):
            block = torch.full((2, block_size), mask_id)
            for step in range(block_size // 2):
                t = torch.full((2,), 1.0 - step / (block_size // 2))
                if use_cache:
                    logits = model.denoise_block(block, cache, t)
                else:
                    logits = uncached_block_logits(model, x0, block, b, block_size, t)
                seen.append(logits)
                logits[..., mask_id] = -torch.inf
                confidence, token = logits.log_softmax(-1).max(-1)
                confidence = confidence.masked_fill(block != mask_id, -torch.inf)
                commit = confidence.topk(2, dim=-1).indices
                block = block.scatter(1, commit, token.gather(1, commit))
            x0 = torch.cat((x0, block), dim=1)
            if use_cache:
                cache = model.cache_clean_block(block, cache)
        return x0, seen

    cached, cached_logits = sample(True)
    uncached, uncached_logits = sample(False)
    assert torch.equal(cached, uncached) and not (cached == mask_id).any()
    for a, b in zip(cached_logits, uncached_logits, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_autoregressive_mode_is_block_size_one():
    model = make(DiffusionTransformer, time_conditioning="adaln")
    mask_id = V - 1
    x0 = torch.randint(0, V - 1, (2, L), generator=torch.Generator().manual_seed(7))
    logits = model.autoregressive_logits(x0, mask_id)
    ones = torch.ones(2, dtype=torch.float64)
    assert torch.allclose(
        logits, model.forward_block_diffusion(torch.full_like(x0, mask_id), x0, 1, ones)
    )
    # token i is scored from tokens < i only
    changed = x0.clone()
    changed[:, 6] = (changed[:, 6] + 1) % (V - 1)
    diff = (model.autoregressive_logits(changed, mask_id) - logits).abs().amax(-1)
    assert (diff[:, :7] < 1e-12).all() and (diff[:, 7:] > 1e-9).all()
