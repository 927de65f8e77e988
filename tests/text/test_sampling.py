"""Text samplers against the core's exact enumerable targets (prompts, infilling, blocks, ARPC,
CFG), call counting, and the exact block KV cache during sampling."""

from __future__ import annotations

import pytest
import torch

from polydiff.core.conditioning import guided_log_probs
from polydiff.core.discrete import EnumerableTarget, MaskedDiffusion, UniformDiffusion
from polydiff.text.nets import DiffusionTransformer, TransformerConfig
from polydiff.text.sampling import (
    make_template,
    sample_blocks,
    sample_diffusion,
    unsupervised_cfg,
)

V, L = 3, 4
MASK = V  # the extra absorbing state of the enumerable target's path


@pytest.fixture(scope="module")
def target():
    return EnumerableTarget.random(V, L, scale=2.0, seed=0)


def conditional_tv(target: EnumerableTarget, x: torch.Tensor, fixed: torch.Tensor, values):
    """TV between the samples' law and p(x | x[fixed] = values) (one fixed pattern)."""
    compatible = (target.configs[:, fixed] == torch.as_tensor(values)[fixed]).all(-1)
    cond = target.probs * compatible
    cond = cond / cond.sum()
    return 0.5 * (target.empirical(x) - cond).abs().sum().item()


def run(target, steps, solver="mdlm", seed=0, n=6000, **kw):
    path = MaskedDiffusion(V)
    return sample_diffusion(
        target.masked_denoiser(path), path, n, L, steps=steps, solver=solver,
        generator=torch.Generator().manual_seed(seed), **kw,
    )  # fmt: skip


def test_prompt_tv_to_the_conditional_falls_with_steps(target):
    prompt = [2]
    values = torch.tensor([2, 0, 0, 0])
    fixed = torch.tensor([True, False, False, False])
    tvs = []
    for steps in (1, 16):
        out = run(target, steps, prompt=prompt).tokens
        assert (out[:, 0] == 2).all()
        tvs.append(conditional_tv(target, out, fixed, values))
    assert tvs[0] > 0.1 and tvs[1] < 0.05 and tvs[0] > 2 * tvs[1], tvs


@pytest.mark.parametrize("solver", ["first_hitting", "remdm", "llada"])
def test_infilling_keeps_fixed_tokens_and_matches_the_conditional(target, solver):
    values = torch.tensor([1, 0, 2, 0])
    known = torch.tensor([False, False, True, False])
    out = run(target, 32, solver=solver, infill=(values, known)).tokens
    assert (out[:, 2] == 2).all() and (out != MASK).all()
    tv = conditional_tv(target, out, known, values)
    if solver == "llada":  # confidence decoding commits likely tokens first: biased (~0.25)
        assert tv > 0.1, tv
    else:  # exact up to sampling noise (~0.02)
        assert tv < 0.06, tv


def test_uniform_path_keeps_the_prompt(target):
    path = UniformDiffusion(V)
    out = sample_diffusion(
        target.uniform_denoiser(path), path, 200, L, steps=8, solver="udlm", prompt=[1, 0],
        generator=torch.Generator().manual_seed(0),
    ).tokens  # fmt: skip
    assert (out[:, :2] == torch.tensor([1, 0])).all()


def test_temperature_and_top_p_act_on_the_x0_prediction(target):
    # a tiny nucleus keeps only the most likely token of each x0 prediction: fewer distinct
    # samples than at top_p = 1
    nucleus = run(target, L, solver="first_hitting", n=2000, top_p=1e-6).tokens
    full = run(target, L, solver="first_hitting", n=2000).tokens
    assert len(torch.unique(nucleus, dim=0)) < len(torch.unique(full, dim=0))
    # all positions revealed in one step from the all-mask input: the argmax of each marginal
    one_step = run(target, 1, n=20, temperature=0.0).tokens
    marg = target.masked_posterior(torch.full((1, L), MASK), MASK)[0].argmax(-1)
    assert (one_step == marg).all()


def test_network_calls_are_counted(target):
    plain = run(target, 8, n=10)
    assert plain.network_calls == 8 and plain.nfe == 8
    cached = run(target, 64, solver="mdlm_cached", n=10)
    assert cached.nfe <= L + 1 and cached.network_calls <= 64
    guided = run(target, 8, n=10, prompt=[1], cfg_scale=1.0)
    assert guided.network_calls == 16  # conditional + unconditional per step
    # with no-update caching the guided prediction is reused like the plain one
    guided_cached = run(target, 64, solver="mdlm_cached", n=10, prompt=[1], cfg_scale=1.0)
    assert guided_cached.network_calls <= 2 * 64 and guided_cached.nfe <= 2 * L
    known = torch.tensor([[True, False, False, False], [False, True, False, False]])
    with pytest.raises(ValueError, match="per-row prompt positions"):
        run(target, 64, solver="mdlm_cached", n=2, infill=(torch.zeros(2, L), known), cfg_scale=1)
    per_row = run(target, 8, solver="mdlm", n=2, infill=(torch.zeros(2, L), known), cfg_scale=1)
    assert (per_row.tokens[known] == 0).all()


def test_prompt_longer_than_context_is_a_clear_error(target):
    with pytest.raises(ValueError, match="longer than the context of 4 tokens"):
        run(target, 4, prompt=[0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="infill"):
        make_template(2, 4, MASK, infill=(torch.zeros(3), torch.zeros(3, dtype=torch.bool)))


# --- classifier-free guidance ------------------------------------------------------------------


def test_cfg_scale_is_smdms_w_and_the_cores_one_plus_w():
    cond = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0]], dtype=torch.float64))
    uncond = torch.log(torch.tensor([[0.25, 0.25, 0.25, 0.25]], dtype=torch.float64))
    prompt = torch.tensor([[True, False, False, False]])
    assert unsupervised_cfg(prompt, MASK, 0.0).scale == 1.0  # w = 0: the conditional model
    w = unsupervised_cfg(prompt, MASK, 1.0).scale
    assert w == 2.0
    # SMDM's w = 1: p_c^2 / p_u, renormalized; impossible classes stay impossible
    expected = torch.tensor([0.25, 0.09, 0.04, 0.0], dtype=torch.float64) / 0.38
    got = torch.softmax(guided_log_probs(cond, uncond, w), -1)[0]
    assert torch.allclose(got, expected, atol=1e-12)


def test_unsupervised_cfg_masks_the_prompt_for_the_unconditional_call(target):
    seen = []

    def model(z, t):
        seen.append(z.clone())
        return torch.log(target.masked_posterior(z, MASK))

    prompt = torch.tensor([[True, False, False, False]])
    cfg = unsupervised_cfg(prompt, MASK, scale=2.0)
    guided = cfg.wrap_fn(model, cond=None, prediction="logits")
    z = torch.tensor([[2, MASK, 1, MASK]])
    out = guided(z, torch.ones(1))
    assert torch.equal(seen[0], z) and torch.equal(seen[1], torch.tensor([[MASK, MASK, 1, MASK]]))
    log_c = torch.log(target.masked_posterior(z, MASK))
    log_u = torch.log(target.masked_posterior(seen[1], MASK))
    ref = torch.log_softmax(log_u + 3.0 * (log_c - log_u), -1)
    assert torch.allclose(torch.log_softmax(out, -1)[0, 1], ref[0, 1], atol=1e-10)


def test_cfg_interval_guides_only_inside_it(target):
    plain = run(target, 8, n=300, prompt=[1]).tokens
    guided = run(target, 8, n=300, prompt=[1], cfg_scale=2.0)
    outside = run(target, 8, n=300, prompt=[1], cfg_scale=2.0, cfg_interval=(2.0, 3.0))
    inside = run(target, 8, n=300, prompt=[1], cfg_scale=2.0, cfg_interval=(0.0, 1.0))
    assert not torch.equal(guided.tokens, plain)  # guidance changes the samples ...
    assert torch.equal(inside.tokens, guided.tokens)  # ... at every time of the grid
    assert torch.equal(outside.tokens, plain)  # and at none outside the interval
    assert outside.network_calls == guided.network_calls == 16


# --- block sampling ------------------------------------------------------------------------------


class ExactBlockModel:
    """The block-network interface of :func:`sample_blocks` from the exact target: the "cache"
    holds the clean prefix, denoise_block gives p(x^b | x^{<b}, z^b), verify_block the exact AR
    conditionals p(x_i | x_<i)."""

    def __init__(self, target: EnumerableTarget) -> None:
        self.target = target

    def _posterior(self, prefix, z):
        B = z.shape[0]
        rest = L - prefix.shape[1] - z.shape[1]
        full = torch.cat((prefix, z, torch.full((B, rest), MASK)), 1)
        return self.target.masked_posterior(full, MASK)

    class Cache:  # the clean prefix; index_select like a KVCache
        def __init__(self, tokens):
            self.tokens = tokens

        def index_select(self, rows):
            return ExactBlockModel.Cache(self.tokens[rows])

    def _prefix(self, cache, z):
        return torch.zeros(z.shape[0], 0, dtype=torch.long) if cache is None else cache.tokens

    def denoise_block(self, z, cache, t=None):
        prefix = self._prefix(cache, z)
        lo = prefix.shape[1]
        return torch.log(self._posterior(prefix, z)[:, lo : lo + z.shape[1]])

    def cache_clean_block(self, block, cache=None, causal=False):
        return self.Cache(torch.cat((self._prefix(cache, block), block), 1))

    def verify_block(self, x0, mask_id, ar_cache=None):
        prefix = self._prefix(ar_cache, x0)
        lo, T = prefix.shape[1], x0.shape[1]
        out = []
        for i in range(T):
            z = torch.cat((x0[:, :i], torch.full((x0.shape[0], T - i), MASK)), 1)
            out.append(self._posterior(prefix, z)[:, lo + i])
        return torch.log(torch.stack(out, 1))


def test_block_sampler_tv_falls_with_steps_per_block(target):
    path = MaskedDiffusion(V)
    model = ExactBlockModel(target)
    tvs = []
    for steps in (1, 16):
        res = sample_blocks(
            model, path, 6000, L, 2, steps=steps, skip_unchanged=False,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        tvs.append(target.tv(res.tokens))
        assert res.network_calls == 2 * steps + 1  # two blocks, one cache update
    assert tvs[0] > 0.1 and tvs[1] < 0.05, tvs


def test_arpc_beats_ancestral_at_few_steps_on_likelihood(target):
    """ARPC corrects unlikely tokens with the AR verifier: at 2 steps per block its samples are
    more likely under the target than plain ancestral samples (the quality gain it trades
    diversity for), at ~2x the calls per block."""
    path = MaskedDiffusion(V)
    model = ExactBlockModel(target)
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    kw = {"steps": 2, "generator": gen()}
    anc = sample_blocks(model, path, 4000, L, 4, **kw)
    arpc = sample_blocks(model, path, 4000, L, 4, arpc=True, steps=2, generator=gen())
    logp = lambda x: torch.log(target.probs[target.flat_index(x)]).mean()  # noqa: E731
    assert logp(arpc.tokens) > logp(anc.tokens) + 0.1
    assert arpc.network_calls == 2 * 2 - 1 and anc.network_calls == 2


def test_block_prompt_and_errors(target):
    path = MaskedDiffusion(V)
    model = ExactBlockModel(target)
    res = sample_blocks(model, path, 50, L, 2, steps=2, prompt=[2, 1, 0], arpc=True)
    assert (res.tokens[:, :3] == torch.tensor([2, 1, 0])).all() and (res.tokens != MASK).all()
    with pytest.raises(ValueError, match="longer than the context"):
        sample_blocks(model, path, 2, L, 2, steps=2, prompt=[0] * 5)
    with pytest.raises(ValueError, match="no-update caching"):
        sample_blocks(model, path, 2, L, 2, steps=2, solver="mdlm_cached")


def seeded_net(vocab: int, conditioning: str = "none") -> DiffusionTransformer:
    """A small float64 DiffusionTransformer in eval mode, initialised from seed 0."""
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab, d_model=32, n_layers=2, n_heads=2, max_seq_len=16, time_conditioning=conditioning
    )
    return DiffusionTransformer(config).double().eval()


@pytest.mark.parametrize("conditioning", ["none", "adaln"])
def test_cached_and_uncached_block_sampling_are_identical(conditioning):
    net = seeded_net(8, conditioning)
    path = MaskedDiffusion(8, mask_index=7)
    out = {}
    with torch.no_grad():
        for cache in (True, False):
            out[cache] = sample_blocks(
                net, path, 5, 14, 4, steps=3, use_cache=cache, prompt=[1, 2, 3, 4, 5],
                skip_unchanged=False,
                generator=torch.Generator().manual_seed(3),
            )  # fmt: skip
    assert torch.equal(out[True].tokens, out[False].tokens)
    assert (out[True].tokens[:, :5] == torch.arange(1, 6)).all()
    # 4 blocks, the first one fully prompted: 3 decoded x 3 steps + 3 cache updates
    assert out[True].network_calls == 12 and out[False].network_calls == 9


def test_no_update_caching_inside_blocks_same_samples_fewer_rows(target):
    path = MaskedDiffusion(V)
    model = ExactBlockModel(target)
    runs = {}
    for skip in (False, True):
        runs[skip] = sample_blocks(
            model, path, 300, L, 2, steps=16, skip_unchanged=skip,
            generator=torch.Generator().manual_seed(2),
        )  # fmt: skip
    assert torch.equal(runs[False].tokens, runs[True].tokens)
    assert runs[False].nfe == 2 * 16 + 1
    assert runs[True].nfe <= 2 * (2 + 1) + 1  # per block: the all-mask call + one per reveal


def test_no_update_caching_with_the_kv_cache_of_a_network():
    net = seeded_net(8)
    path = MaskedDiffusion(8, mask_index=7)
    out = {}
    with torch.no_grad():
        for skip in (False, True):
            for cache in (True, False):
                out[skip, cache] = sample_blocks(
                    net, path, 6, 16, 4, steps=12, use_cache=cache, skip_unchanged=skip,
                    generator=torch.Generator().manual_seed(5),
                )  # fmt: skip
    ref = out[False, True]
    assert all(torch.equal(r.tokens, ref.tokens) for r in out.values())
    assert out[True, True].nfe < ref.nfe and out[True, False].nfe < out[False, False].nfe


@pytest.mark.parametrize("conditioning", ["none", "add"])
def test_verify_block_equals_the_autoregressive_mode(conditioning):
    net = seeded_net(9, conditioning)
    x = torch.randint(0, 8, (3, 12))
    with torch.no_grad():
        full = net.autoregressive_logits(x, mask_id=8)
        ar_cache = None
        for lo in range(0, 12, 4):
            block = x[:, lo : lo + 4]
            assert torch.allclose(
                net.verify_block(block, 8, ar_cache), full[:, lo : lo + 4], atol=1e-10
            )
            ar_cache = net.cache_clean_block(block, ar_cache, causal=True)


# --- a tiny trained block model ------------------------------------------------------------------


def test_tiny_trained_blockgen_arpc_corrects_ancestral_errors():
    """BlockGen trained 150 steps on "abcd" cycles with a random phase (4 blocks of 4): at 4
    steps per block, ancestral sampling makes errors (independent reveals within a step) that
    ARPC's AR verification corrects. Chance level is 0.25."""
    from polydiff.text.data import ByteTokenizer
    from polydiff.text.methods import BlockGen, BlockGenConfig

    def cycles(n):
        return 97 + (torch.randint(0, 4, (n, 1)) + torch.arange(16)) % 4

    def valid(x):  # fraction of transitions that follow the cycle
        return ((x[:, 1:] - 97) == (x[:, :-1] - 97 + 1) % 4).double().mean().item()

    tok = ByteTokenizer()
    torch.manual_seed(0)
    config = TransformerConfig(tok.vocab_size, d_model=32, n_layers=2, n_heads=2, max_seq_len=16)
    method = BlockGen(BlockGenConfig(config, block_sizes={1: 0.2, 4: 0.8}), tok)
    opt = torch.optim.Adam(method.net.parameters(), lr=3e-3)
    for _ in range(150):
        loss = method.loss_fn(method.net, cycles(32))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.net.eval()
    gen = torch.Generator().manual_seed(0)
    anc = method.sample(64, 16, steps=4, skip_unchanged=False, generator=gen)
    arpc = method.sample(64, 16, steps=4, arpc=True, generator=gen)
    assert 0.5 < valid(anc.tokens) < valid(arpc.tokens) - 0.05, (
        valid(anc.tokens),
        valid(arpc.tokens),
    )
    # calls: 4 blocks x 4 steps + 3 cache updates; ARPC 4 x (2 x 4 - 1) + 3 x 2 caches
    assert anc.network_calls == 19 and arpc.network_calls == 34
    prompted = method.sample(8, 16, steps=4, prompt=[97, 98, 99, 100, 97], arpc=True)
    assert (prompted.tokens[:, :5] == torch.tensor([97, 98, 99, 100, 97])).all()
