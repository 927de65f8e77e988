"""Methods as units: losses against hand values, training through polydiff.core.train, and
checkpoints (safetensors + config + tokenizer; another vocabulary is a clear error)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from polydiff.core.train import load_config
from polydiff.text.data import BPETokenizer, ByteTokenizer
from polydiff.text.losses import block_diffusion_nelbo
from polydiff.text.methods import (
    AR,
    MDLM,
    UDLM,
    ARConfig,
    BlockGen,
    BlockGenConfig,
    MDLMConfig,
    UDLMConfig,
    load_method,
)
from polydiff.text.nets import TransformerConfig
from polydiff.text.training import EXPORT_DIR, train_method

TOK = ByteTokenizer()
V = TOK.vocab_size


def tiny(**kw) -> TransformerConfig:
    return TransformerConfig(V, d_model=32, n_layers=1, n_heads=2, max_seq_len=32, **kw)


def all_methods():
    return [
        MDLM(MDLMConfig(tiny()), TOK),
        UDLM(UDLMConfig(tiny(time_conditioning="adaln")), TOK),
        BlockGen(BlockGenConfig(tiny(), block_sizes={1: 0.5, 8: 0.5}), TOK),
        AR(ARConfig(tiny()), TOK),
    ]


class ConstantLogits(nn.Module):
    """Zero logits: a uniform prediction over the vocabulary (the mask gets -inf in SUBS)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, t=None, attn_mask=None):
        return torch.zeros(*z.shape, V, dtype=torch.float64) + 0 * self.dummy


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_loss_is_a_differentiable_scalar(method):
    torch.manual_seed(0)
    x0 = torch.randint(0, 256, (4, 32))
    loss = method.loss_fn(method.net, (x0,))["loss"]
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    loss.backward()
    grads = [p.grad for p in method.net.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_mdlm_loss_of_a_uniform_predictor_is_hand_computed():
    """Uniform x_theta over the V - 1 non-mask tokens: each masked token costs log(V - 1)/t and
    is masked with probability (1 - eps) t, so the NELBO per token is (1 - eps) log(V - 1)."""
    torch.manual_seed(0)
    method = MDLM(MDLMConfig(tiny()), TOK, net=ConstantLogits())
    x0 = torch.randint(0, 256, (256, 32))
    loss = float(method.loss_fn(method.net, x0)["loss"].detach())
    assert loss == pytest.approx((1 - 1e-3) * math.log(V - 1), rel=0.03)


def test_ar_loss_is_log_v_for_a_uniform_model_and_ignores_padding():
    method = AR(ARConfig(tiny()), TOK, net=ConstantLogits())
    x0 = torch.randint(0, 256, (3, 16))
    assert float(method.loss_fn(method.net, x0)["loss"].detach()) == pytest.approx(
        math.log(V), rel=1e-6
    )
    # padding targets are not counted: a model perfect on the real tokens has loss 0
    padded = torch.full((2, 8), TOK.pad_id)
    padded[:, :4] = 7

    class Perfect(nn.Module):
        def forward(self, ids):
            return torch.nn.functional.one_hot(torch.full_like(ids, 7), V).double() * 50

    assert float(method.loss_fn(Perfect(), padded)["loss"]) < 1e-12


def test_blockgen_draws_block_sizes_from_the_mixture():
    method = BlockGen(BlockGenConfig(tiny(), block_sizes={1: 0.25, 8: 0.75}), TOK)
    torch.manual_seed(0)
    x0 = torch.randint(0, 256, (2, 16))
    sizes = [int(method.loss_fn(method.net, x0)["block_size"]) for _ in range(200)]
    assert set(sizes) == {1, 8}
    assert sizes.count(8) / len(sizes) == pytest.approx(0.75, abs=0.08)
    assert method.config.sample_block_size == 8


def test_udlm_posterior_logits_are_the_leave_one_out_conversion():
    method = UDLM(UDLMConfig(tiny(time_conditioning="adaln")), TOK)
    z = torch.randint(0, V, (2, 8))
    t = torch.tensor([0.3, 0.8], dtype=torch.float64)
    loo = torch.log_softmax(method.net(z, t).double(), -1)
    post = torch.log_softmax(method.posterior_logits(z, t), -1)
    # p(x | z) / p_loo(x | z^-l) is (1 + V alpha / (1 - alpha)) at x = z, 1 elsewhere (normalized)
    alpha = 1 - (1 - 1e-3) * t
    gain = torch.log1p(V * alpha / (1 - alpha))[:, None]
    ratio = post - loo
    at_z = ratio.gather(-1, z[..., None]).squeeze(-1)
    others = ratio.scatter(-1, z[..., None], float("nan")).nanmean(-1)
    assert torch.allclose(at_z - others, gain.expand_as(at_z), atol=1e-9)


def test_config_errors():
    with pytest.raises(ValueError, match="vocab_size"):
        MDLM(MDLMConfig(TransformerConfig(100, d_model=32, n_heads=2)), TOK)
    with pytest.raises(ValueError, match="block_sizes"):
        BlockGenConfig(tiny(), block_sizes={0: 1.0})
    with pytest.raises(ValueError, match="unknown discrete schedule"):
        MDLMConfig(tiny(), schedule="linear")


# --- training through the core scaffold and checkpoints ----------------------------------------


def test_trains_through_core_fit_and_exports_loadable_checkpoint(tmp_path):
    method = MDLM(MDLMConfig(tiny()), TOK)
    data = torch.randint(0, 256, (16, 32), generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in method.net.state_dict().items()}
    with torch.random.fork_rng(devices=[]):
        module = train_method(
            method, data, tmp_path / "run", max_steps=3, batch_size=4, lr=1e-3, warmup_steps=0,
            ema_decay=0.5, validation=data[:4], accelerator="cpu", devices=1,
            progress_bar=False, log_every=1,
        )  # fmt: skip
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert any(not torch.equal(before[k], v) for k, v in method.net.state_dict().items())
    config = load_config(tmp_path / "run" / EXPORT_DIR)
    assert config["method"] == "mdlm" and config["tokenizer"]["fingerprint"] == "byte-v1"
    assert config["tokenizer"]["vocab_size"] == V
    loaded = load_method(tmp_path / "run" / EXPORT_DIR)
    assert isinstance(loaded, MDLM) and not loaded.net.training
    for key, value in module.ema_net.state_dict().items():  # the EMA weights were exported
        assert torch.equal(loaded.net.state_dict()[key], value), key
    with pytest.raises(ValueError, match="batch_size"):
        train_method(method, data[:2], tmp_path / "small", max_steps=1, batch_size=4)


def test_ema_warmup_reaches_the_training_weights(tmp_path):
    """Without warmup the EMA (decay 0.999) after 5 steps is still 0.999^5 = 99.5% the init;
    with warmup (decay (1+n)/(10+n)) the init's share is prod_n (1+n)/(10+n) = 0.2%."""
    data = torch.randint(0, 256, (16, 32), generator=torch.Generator().manual_seed(0))
    share = {}
    for warm in (False, True):
        torch.manual_seed(0)
        method = MDLM(MDLMConfig(tiny()), TOK)
        init = {k: v.clone() for k, v in method.net.state_dict().items()}
        with torch.random.fork_rng(devices=[]):
            module = train_method(
                method, data, tmp_path / f"run{warm}", max_steps=5, batch_size=4, lr=1e-2,
                warmup_steps=0, ema_decay=0.999, ema_warmup=warm, accelerator="cpu",
                devices=1, progress_bar=False,
            )  # fmt: skip
        ckpt = torch.load(tmp_path / f"run{warm}" / "checkpoints" / "last.ckpt", weights_only=True)
        raw = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        ema = module.ema_net.state_dict()  # (train_method copied it into module.net)
        # the EMA as a mix of init and trained weights: share of the init along init -> raw
        num = sum(float(((ema[k] - raw[k]) * (init[k] - raw[k])).sum()) for k in init)
        den = sum(float(((init[k] - raw[k]) ** 2).sum()) for k in init)
        share[warm] = num / den
    assert share[False] > 0.9 and share[True] < 0.2, share


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_checkpoint_round_trip(tmp_path, method):
    method.save(tmp_path)
    loaded = load_method(tmp_path, tokenizer=ByteTokenizer())
    assert type(loaded) is type(method) and loaded.config == method.config
    x = torch.randint(0, 256, (2, 16))
    method.net.eval()
    if isinstance(method, AR):
        assert torch.equal(loaded.net(x), method.net(x))
    else:
        t = torch.full((2,), 0.5)
        assert torch.equal(loaded.net(x, t), method.net(x, t))


def test_checkpoint_for_another_vocabulary_is_a_clear_error(tmp_path):
    MDLM(MDLMConfig(tiny()), TOK).save(tmp_path / "ckpt")
    bpe = BPETokenizer.train(["to be or not to be, that is the question"] * 20, vocab_size=300)
    with pytest.raises(ValueError, match=r"trained with a byte tokenizer \(vocabulary 260"):
        load_method(tmp_path / "ckpt", tokenizer=bpe)
    with pytest.raises(FileNotFoundError, match="not a text checkpoint"):
        load_method(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="not a saved polydiff method"):
        load_method(tmp_path / "other")


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_sample_api_prompt_text_and_errors(method):
    method.net.eval()
    kw = {} if isinstance(method, AR) else {"steps": 4}
    res = method.sample(3, 24, prompt="To be", generator=torch.Generator().manual_seed(0), **kw)
    prompt = [TOK.bos_id, *TOK.encode("To be")]
    assert res.tokens.shape == (3, 24) and (res.tokens[:, :6] == torch.tensor(prompt)).all()
    assert (res.tokens != TOK.mask_id).all() and res.network_calls > 0 and res.seconds > 0
    assert all(text.startswith("To be") for text in method.decode(res.tokens))
    with pytest.raises(ValueError, match="longer than the context"):
        method.sample(1, 4, prompt="a long prompt", **kw)


def test_blockgen_block_size_one_bound_is_the_ar_mode_nll():
    """With block size 1 each token is clean (no loss) or masked and predicted from its prefix
    alone: the NELBO is (1 - eps) x the NLL of the AR mode (autoregressive_logits)."""
    torch.manual_seed(0)
    method = BlockGen(BlockGenConfig(tiny(), block_sizes={1: 1.0}), TOK)
    method.net.eval()
    with torch.no_grad():  # peaked, context-dependent predictions: what a token sees matters
        method.net.backbone.head.weight.mul_(20)
    x = torch.randint(0, 256, (8, 16))
    with torch.no_grad():
        logits = method.net.autoregressive_logits(x, TOK.mask_id).double()
        logits[..., TOK.mask_id] = float("-inf")  # SUBS
        nll = -torch.log_softmax(logits, -1).gather(-1, x[..., None]).sum() / x.numel()
    gen = torch.Generator().manual_seed(0)
    ppl = method.perplexity_bound([x], block_size=1, n_time_samples=200, generator=gen)
    assert math.log(ppl) == pytest.approx((1 - 1e-3) * float(nll), rel=0.02)


def test_ar_top_p_keeps_the_nucleus():
    """A tiny nucleus samples the argmax (greedy decoding); top_p = 1 with the same noise is
    the plain sampler."""
    torch.manual_seed(0)
    method = AR(ARConfig(tiny()), TOK)
    method.net.eval()
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    greedy = method.sample(4, 12, temperature=0.0).tokens
    nucleus = method.sample(4, 12, top_p=1e-9, generator=gen()).tokens
    assert torch.equal(nucleus, greedy)
    plain = method.net.generate(greedy[:, :1], 11, 1.0, gen(), banned=(TOK.mask_id,))
    assert torch.equal(method.sample(4, 12, top_p=1.0, generator=gen()).tokens, plain)
    with pytest.raises(ValueError, match="top_p"):
        method.sample(1, 4, top_p=0.0)


def test_blockgen_mixture_bound():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (4, 16))
    single = BlockGen(BlockGenConfig(tiny(), block_sizes={8: 1.0}), TOK)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    # one block size: the mixture bound is that size's bound (same draws)
    mix = single.mixture_perplexity_bound([x], n_time_samples=2, generator=gen())
    assert mix == pytest.approx(single.perplexity_bound([x], 8, 2, gen()), rel=1e-12)
    # two sizes: per sequence -log(0.25 e^{-N_1} + 0.75 e^{-N_8}), with N_b from the same draws
    both = BlockGen(BlockGenConfig(tiny(), block_sizes={1: 1.0, 8: 3.0}), TOK, net=single.net)
    g = gen()
    with torch.no_grad():
        N = {
            b: torch.stack(
                [block_diffusion_nelbo(both.net, x, both.path, b, generator=g).nelbo for _ in "ab"]
            ).mean(0)
            for b in (1, 8)
        }
    per_seq = -torch.log(0.25 * torch.exp(-N[1]) + 0.75 * torch.exp(-N[8]))
    expected = math.exp(float(per_seq.sum()) / x.numel())
    mixed = both.mixture_perplexity_bound([x], n_time_samples=2, generator=gen())
    assert mixed == pytest.approx(expected, rel=1e-9)
    # never above the better size's bound plus log(1 / gamma) per sequence
    best = torch.minimum(N[1] - math.log(0.25), N[8] - math.log(0.75))
    assert math.log(mixed) <= float(best.sum()) / x.numel() + 1e-9
