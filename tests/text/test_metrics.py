"""Evaluation helpers on tiny cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polydiff.text.metrics import (
    ar_perplexity,
    generative_perplexity,
    sequence_nll,
    unigram_entropy,
    unigram_perplexity,
)
from polydiff.text.nets import CausalTransformer, TransformerConfig

# A bigram "language model" over 4 symbols (3 = BOS): row = previous token, column = next token.
P = torch.tensor(
    [
        [0.5, 0.25, 0.25, 0.0],
        [0.1, 0.2, 0.7, 0.0],
        [0.6, 0.3, 0.1, 0.0],
        [0.8, 0.1, 0.1, 0.0],
    ],
    dtype=torch.float64,
)


def bigram(ids: torch.Tensor) -> torch.Tensor:
    return P.clamp_min(1e-300).log()[ids]


def uniform(ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*ids.shape, 7)


def test_sequence_nll_by_hand():
    ids = torch.tensor([[0, 1, 2], [2, 2, 0]])
    nll, count = sequence_nll(bigram, ids)
    expected = [-math.log(0.25) - math.log(0.7), -math.log(0.1) - math.log(0.6)]
    assert torch.allclose(nll, torch.tensor(expected, dtype=torch.float64))
    assert count.tolist() == [2, 2]
    nll_bos, count_bos = sequence_nll(bigram, ids, bos_id=3)
    assert count_bos.tolist() == [3, 3]
    assert torch.allclose(nll_bos - nll, -torch.log(torch.tensor([0.8, 0.1], dtype=torch.float64)))
    # ignored targets (e.g. PAD = 2) are not scored
    nll_pad, count_pad = sequence_nll(bigram, ids, ignore_ids=(2,))
    assert count_pad.tolist() == [1, 1]
    assert torch.allclose(
        nll_pad, torch.tensor([-math.log(0.25), -math.log(0.6)], dtype=torch.float64)
    )


def test_ar_perplexity_by_hand():
    batches = [torch.tensor([[0, 1, 2]]), torch.tensor([[2, 2, 0], [1, 1, 1]])]
    nll = -math.log(0.25 * 0.7 * 0.1 * 0.6 * 0.2 * 0.2)
    assert ar_perplexity(bigram, batches) == pytest.approx(math.exp(nll / 6), rel=1e-12)
    assert ar_perplexity(uniform, [torch.randint(0, 7, (3, 9))]) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="no tokens"):
        ar_perplexity(bigram, [])


def test_ar_perplexity_matches_cross_entropy_of_a_transformer():
    torch.manual_seed(0)
    model = CausalTransformer(TransformerConfig(vocab_size=13, d_model=16, n_layers=1, n_heads=2))
    ids = torch.randint(0, 13, (4, 10))
    with torch.no_grad():
        ce = F.cross_entropy(model(ids[:, :-1]).reshape(-1, 13), ids[:, 1:].reshape(-1))
    assert ar_perplexity(model, ids.split(3)) == pytest.approx(math.exp(ce.item()), rel=1e-5)


def test_generative_perplexity():
    samples = torch.tensor([[0, 1, 2], [2, 2, 0], [0, 0, 0]])
    result = generative_perplexity(samples, bigram, bos_id=3, batch_size=2)
    per_sample = [
        0.8 * 0.25 * 0.7,
        0.1 * 0.1 * 0.6,
        0.8 * 0.5 * 0.5,
    ]
    expected = torch.tensor([p ** (-1 / 3) for p in per_sample], dtype=torch.float64)
    assert torch.allclose(result.per_sample, expected)
    pooled = math.prod(per_sample) ** (-1 / 9)
    assert result.ppl == pytest.approx(pooled, rel=1e-12)
    assert result.n_tokens.tolist() == [3, 3, 3]
    assert generative_perplexity(torch.randint(0, 6, (5, 8)), uniform).ppl == pytest.approx(7.0)
    with pytest.raises(ValueError, match="mask token 2"):
        generative_perplexity(samples, bigram, mask_id=2)


def test_unigram_entropy_by_hand():
    samples = torch.tensor([[0, 0, 1, 1], [5, 5, 5, 5], [0, 1, 2, 3], [4, 4, 4, 6]])
    h = unigram_entropy(samples)
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)
    expected = torch.tensor([math.log(2), 0.0, math.log(4), float(-(p * p.log()).sum())])
    assert torch.allclose(h, expected.to(torch.float64))
    # ignoring a padding id removes it from the histogram
    assert torch.allclose(
        unigram_entropy(torch.tensor([[1, 2, 9, 9]]), ignore_ids=(9,)),
        torch.tensor([math.log(2)], dtype=torch.float64),
    )


def test_unigram_perplexity_is_the_smoothed_frequency_model():
    """Train counts (0: 3, 1: 1; PAD=3 ignored) + add-one over V=4: p = (4, 2, 1, 1) / 8."""
    train = torch.tensor([[0, 0, 0, 1, 3, 3]])
    held = torch.tensor([[0, 1, 3], [2, 0, 3]])
    p = {0: 4 / 8, 1: 2 / 8, 2: 1 / 8}
    nll = -(math.log(p[0]) * 2 + math.log(p[1]) + math.log(p[2])) / 4
    assert unigram_perplexity(train, held, 4, ignore_ids=(3,)) == pytest.approx(math.exp(nll))
    # a uniform train text over V symbols gives perplexity V on any held-out text
    assert unigram_perplexity(torch.arange(5).repeat(3)[None], held % 5, 5) == pytest.approx(5)
    with pytest.raises(ValueError, match="no held-out tokens"):
        unigram_perplexity(train, torch.full((1, 2), 3), 4, ignore_ids=(3,))
