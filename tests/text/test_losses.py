"""Losses of polydiff.text against hand-computed values and exact likelihoods.

Ground truth: with the exact denoiser of a small enumerable distribution over sequences, the
continuous-time NELBO of masked, uniform and block diffusion equals -log p(x) (the bound is
tight in continuous time up to the t_min cut and the prior at alpha(1) = eps).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from polydiff.core.discrete import LogLinearSchedule, MaskedDiffusion, UniformDiffusion
from polydiff.text.losses import (
    antithetic_times,
    block_diffusion_nelbo,
    diffusion_nelbo,
    masked_discrete_time_nelbo,
    mixture_nll_bound,
    nelbo_perplexity,
    sample_block_size,
)
from polydiff.text.nets import DiffusionTransformer, TransformerConfig

K, L = 3, 4  # data symbols, sequence length
MASK = K  # the mask token inside a vocabulary of K + 1 (as our tokenizers have it)
SEQS = torch.tensor(list(itertools.product(range(K), repeat=L)))  # [K^L, L]


def joint(seed: int = 0) -> torch.Tensor:
    """A random distribution over the K^L sequences with dependent positions."""
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(len(SEQS), generator=gen, dtype=torch.float64)
    return torch.softmax(logits, 0)


def masked_marginals(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Exact p(x^l = k | unmasked tokens of z) for every row and position: [B, L, K]."""
    consistent = ((z[:, None, :] == MASK) | (z[:, None, :] == SEQS[None])).all(-1)  # [B, S]
    w = p[None] * consistent
    onehot = torch.nn.functional.one_hot(SEQS, K).double()  # [S, L, K]
    return torch.einsum("bs,slk->blk", w, onehot) / w.sum(-1)[:, None, None]


class ExactMaskedDenoiser:
    """x0 logits of the exact denoiser (vocabulary K + 1: the mask logit is ignored by SUBS)."""

    def __init__(self, p: torch.Tensor) -> None:
        self.p = p

    def __call__(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        logp = masked_marginals(self.p, z_t).clamp_min(1e-300).log()
        return torch.cat((logp, torch.zeros(*z_t.shape, 1, dtype=logp.dtype)), dim=-1)

    def forward_block_diffusion(self, z_t, x0, block_size, t):
        """Block b: clean blocks < b from x0, noisy block b from z_t, later blocks unknown."""
        out = []
        for b in range(L // block_size):
            z = torch.full_like(x0, MASK)
            z[:, : b * block_size] = x0[:, : b * block_size]
            z[:, b * block_size : (b + 1) * block_size] = z_t[
                :, b * block_size : (b + 1) * block_size
            ]
            out.append(self(z, t)[:, b * block_size : (b + 1) * block_size])
        return torch.cat(out, dim=1)


def loo_denoiser(p: torch.Tensor, path: UniformDiffusion):
    """The exact leave-one-out denoiser p(x^l | z_t^{-l}) under uniform noise, as logits."""

    def model(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = path.alpha(t.to(torch.float64))[:, None, None]  # [B, 1, 1]
        match = (z_t[:, None, :] == SEQS[None]).double()  # [B, S, L]
        lik = a * match + (1 - a) / K  # q(z^j | x^j = seq_s^j)
        logits = []
        for pos in range(L):
            others = torch.cat((lik[..., :pos], lik[..., pos + 1 :]), -1).prod(-1)  # [B, S]
            w = p[None] * others
            onehot = torch.nn.functional.one_hot(SEQS[:, pos], K).double()  # [S, K]
            logits.append((w @ onehot).log())
        return torch.stack(logits, dim=1)

    return model


def assert_close_to_nll(estimates: torch.Tensor, nll: float) -> None:
    """Monte-Carlo mean within 4 standard errors (plus a small bias budget) of the exact NLL."""
    mean, se = estimates.mean().item(), estimates.std().item() / math.sqrt(len(estimates))
    assert abs(mean - nll) < 4 * se + 0.02, (mean, se, nll)


# ---- time sampling ---------------------------------------------------------------------------


def test_antithetic_times_have_one_time_per_stratum():
    t = antithetic_times(16, t_min=0.2, t_max=0.6, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.float64 and ((t >= 0.2) & (t < 0.6)).all()
    strata = ((t - 0.2) / 0.4 * 16).floor().long()
    assert sorted(strata.tolist()) == list(range(16))
    again = antithetic_times(16, t_min=0.2, t_max=0.6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)
    with pytest.raises(ValueError, match="t_min"):
        antithetic_times(4, t_min=0.5, t_max=0.5)


# ---- masked diffusion ------------------------------------------------------------------------


def test_masked_nelbo_by_hand():
    """Model uniform over the 3 data symbols: each masked token costs log 3 / t (log-linear
    schedule with eps = 0 has alpha'/(1 - alpha) = -1/t); unmasked tokens cost 0 (carry-over)
    even though the model's logits there are terrible."""
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=0.0))
    x0 = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    t = torch.tensor([0.8, 0.5], dtype=torch.float64)
    seen = {}

    def model(z_t, t_in):
        seen["z_t"], seen["t"] = z_t, t_in
        logits = torch.zeros(*z_t.shape, K + 1)
        logits[..., MASK] = 50.0  # SUBS never predicts the mask
        wrong = (x0 + 1) % K
        return logits.scatter(-1, wrong[..., None], torch.where(z_t == MASK, 0.0, 30.0)[..., None])

    out = diffusion_nelbo(model, x0, path, t=t, generator=torch.Generator().manual_seed(1))
    assert torch.equal(seen["z_t"], out.z_t) and torch.equal(seen["t"], t)
    assert ((out.z_t == x0) | (out.z_t == MASK)).all()
    n_masked = (out.z_t == MASK).sum(-1).double()
    assert n_masked.sum() > 0
    assert torch.allclose(out.nelbo, n_masked * math.log(3) / t)
    assert out.n_tokens.tolist() == [L, L]
    assert out.loss.item() == pytest.approx(out.nelbo.sum().item() / (2 * L))
    # a loss mask removes positions from both sums
    keep = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    masked = diffusion_nelbo(
        model, x0, path, t=t, loss_mask=keep, generator=torch.Generator().manual_seed(1)
    )
    expected = ((out.z_t == MASK) & keep).sum(-1).double() * math.log(3) / t
    assert torch.allclose(masked.nelbo, expected) and masked.n_tokens.tolist() == [2, 4]


def test_masked_nelbo_with_exact_denoiser_equals_nll():
    p = joint()
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=1e-4))
    x = SEQS[int(p.argmax())]  # a likely sequence and an unlikely one
    for seq in (x, SEQS[int(p.argmin())]):
        x0 = seq.expand(4000, L)
        out = diffusion_nelbo(
            ExactMaskedDenoiser(p), x0, path, t_min=1e-4, generator=torch.Generator().manual_seed(2)
        )
        nll = -math.log(p[(SEQS == seq).all(-1)].item())
        assert_close_to_nll(out.nelbo, nll)


def test_discrete_time_masked_nelbo():
    p = joint(seed=3)
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=0.0))
    seq = SEQS[int(p.argmax())]
    x0 = seq.expand(4000, L)
    exact = ExactMaskedDenoiser(p)
    # T = 1: every token predicted from the all-masked sequence, i.e. the sum of marginal NLLs
    one = masked_discrete_time_nelbo(exact, x0, path, 1, generator=torch.Generator().manual_seed(0))
    assert (one.t == 1).all() and (one.z_t == MASK).all()
    marginals = masked_marginals(p, torch.full((1, L), MASK))[0]
    expected = -marginals.gather(-1, seq[:, None]).log().sum()
    assert torch.allclose(one.nelbo, expected.expand(4000))
    # more steps tighten the bound toward -log p(x); times lie on the grid
    nll = -math.log(p.max().item())
    means = []
    for n_steps in (2, 8, 64):
        out = masked_discrete_time_nelbo(
            exact, x0, path, n_steps, generator=torch.Generator().manual_seed(n_steps)
        )
        assert torch.allclose(out.t * n_steps, (out.t * n_steps).round())
        means.append(out.nelbo.mean().item())
    assert expected.item() > means[0] > means[1] > nll - 0.02
    assert_close_to_nll(out.nelbo, nll)


def test_nelbo_perplexity_of_a_uniform_model_is_the_vocabulary():
    """E_t[(1/t) P(masked)] = 1 per token: the bound of a uniform-over-K model is K."""
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=0.0))
    batches = [
        torch.randint(0, K, (256, L), generator=torch.Generator().manual_seed(i)) for i in range(4)
    ]

    def model(z_t, t):
        return torch.zeros(*z_t.shape, K + 1)

    ppl, se = nelbo_perplexity(model, batches, path, generator=torch.Generator().manual_seed(0))
    assert ppl == pytest.approx(K ** (1 - 1e-3), rel=0.05) and 0 < se < 0.05 * ppl
    # the same for a block-diffusion network with a zero head (uniform logits), PAD ignored
    net = DiffusionTransformer(
        TransformerConfig(vocab_size=K + 1, d_model=16, n_layers=1, n_heads=2)
    )
    torch.nn.init.zeros_(net.backbone.head.weight)
    padded = [torch.cat((b, torch.full((256, 2), 0)), dim=1) for b in batches]
    block_ppl, _ = nelbo_perplexity(
        net, padded, path, pad_id=0, block_size=2, generator=torch.Generator().manual_seed(1)
    )
    assert block_ppl == pytest.approx(K ** (1 - 1e-3), rel=0.05)


def _draw(p: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return SEQS[torch.multinomial(p, n, replacement=True, generator=gen)]


def test_the_standard_error_matches_the_spread_over_held_out_sets():
    """The reported standard error (over sequences, time noise included) predicts how much the
    bound moves between independent held-out sets of the same distribution."""
    p = joint(seed=3)
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=1e-3))
    exact = ExactMaskedDenoiser(p)
    ppls, errors = [], []
    for seed in range(40):
        ppl, se = nelbo_perplexity(exact, [_draw(p, 64, seed)], path, n_time_samples=2,
                                   generator=torch.Generator().manual_seed(seed))  # fmt: skip
        ppls.append(ppl)
        errors.append(se)
    observed, predicted = float(torch.tensor(ppls).std()), float(torch.tensor(errors).mean())
    assert predicted == pytest.approx(observed, rel=0.3)


# ---- uniform diffusion -----------------------------------------------------------------------


def test_uniform_nelbo_with_leave_one_out_denoiser_equals_nll():
    p = joint(seed=1)
    path = UniformDiffusion(K, schedule=LogLinearSchedule(eps=1e-4))
    model = loo_denoiser(p, path)
    seq = SEQS[int(p.argmax())]
    # the uniform-noise integrand is noisier than the masked one: more draws
    out = diffusion_nelbo(
        model, seq.expand(20000, L), path, t_min=1e-4, generator=torch.Generator().manual_seed(3)
    )
    assert_close_to_nll(out.nelbo, -math.log(p.max().item()))


def test_uniform_nelbo_reduction_matches_the_core_integrand():
    path = UniformDiffusion(K)
    x0 = torch.randint(0, K, (3, L), generator=torch.Generator().manual_seed(4))
    logits = torch.randn(3, L, K, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    out = diffusion_nelbo(
        lambda z, s: logits, x0, path, t=t, generator=torch.Generator().manual_seed(6)
    )
    per_token = path.loss(logits, x0, out.z_t, t)
    assert (per_token >= -1e-12).all()  # each term is a KL-like divergence
    assert torch.allclose(out.nelbo, per_token.sum(-1))


# ---- block diffusion -------------------------------------------------------------------------


def test_block_diffusion_nelbo_with_exact_denoiser_equals_nll():
    p = joint(seed=2)
    path = MaskedDiffusion(K + 1, mask_index=MASK, schedule=LogLinearSchedule(eps=1e-4))
    seq = SEQS[int(p.argmax())]
    out = block_diffusion_nelbo(
        ExactMaskedDenoiser(p),
        seq.expand(4000, L),
        path,
        block_size=2,
        t_range=(1e-4, 1.0),
        generator=torch.Generator().manual_seed(7),
    )
    # one time per block, constant inside it
    assert torch.equal(out.t[:, 0], out.t[:, 1]) and torch.equal(out.t[:, 2], out.t[:, 3])
    assert not torch.equal(out.t[:, 0], out.t[:, 2])
    assert_close_to_nll(out.nelbo, -math.log(p.max().item()))


def test_block_diffusion_with_one_block_is_plain_masked_diffusion():
    torch.manual_seed(0)
    model = DiffusionTransformer(
        TransformerConfig(vocab_size=K + 1, d_model=16, n_layers=1, n_heads=2)
    )
    path = MaskedDiffusion(K + 1, mask_index=MASK)
    x0 = torch.randint(0, K, (5, L), generator=torch.Generator().manual_seed(8))
    t = torch.rand(5, 1, dtype=torch.float64).expand(5, L)
    block = block_diffusion_nelbo(
        model, x0, path, L, t=t, generator=torch.Generator().manual_seed(9)
    )
    plain = diffusion_nelbo(model, x0, path, t=t, generator=torch.Generator().manual_seed(9))
    assert torch.equal(block.z_t, plain.z_t)
    assert torch.allclose(block.nelbo, plain.nelbo, atol=1e-5)
    block.loss.backward()  # the training objective is differentiable
    assert model.backbone.embed.weight.grad is not None
    with pytest.raises(ValueError, match="one time per token"):
        block_diffusion_nelbo(model, x0, path, 2, t=t[:, 0])


def test_a_tiny_denoiser_learns_a_pattern():
    """Integration: 60 optimizer steps on cyclic sequences x_i = (o + i) mod 5 cut the masked
    NELBO and (faster: the clean prefix gives the phase away) the block-diffusion NELBO."""
    torch.manual_seed(0)
    V, n = 6, 16
    config = TransformerConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, max_seq_len=n)
    path = MaskedDiffusion(V, mask_index=V - 1)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randint(0, 5, (256, 1), generator=gen) + torch.arange(n)) % 5
    for block_size, factor in ((None, 0.8), (4, 0.3)):
        model = DiffusionTransformer(config)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(60):
            x0 = data[torch.randint(0, 256, (32,), generator=gen)]
            if block_size is None:
                out = diffusion_nelbo(model, x0, path, generator=gen)
            else:
                out = block_diffusion_nelbo(model, x0, path, block_size, generator=gen)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
        assert last < factor * first, (block_size, first, last)


def test_block_size_mixture():
    gen = torch.Generator().manual_seed(0)
    draws = [sample_block_size({1: 0.25, 16: 0.75}, gen) for _ in range(2000)]
    assert set(draws) == {1, 16}
    assert abs(draws.count(1) / 2000 - 0.25) < 0.04
    with pytest.raises(ValueError, match="positive"):
        sample_block_size({4: 0.0})
    nll = {1: torch.tensor([2.0, 5.0]), 16: torch.tensor([3.0, 1.0])}
    bound = mixture_nll_bound(nll, {1: 0.05, 16: 0.95})
    expected = [
        -math.log(0.05 * math.exp(-2) + 0.95 * math.exp(-3)),
        -math.log(0.05 * math.exp(-5) + 0.95 * math.exp(-1)),
    ]
    assert torch.allclose(bound, torch.tensor(expected, dtype=torch.float64))
    # the mixture is never worse than its best component by more than -log(its weight)
    assert (bound <= torch.minimum(nll[1] - math.log(0.05), nll[16] - math.log(0.95))).all()
