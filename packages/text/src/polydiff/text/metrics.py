"""Evaluation the discrete-diffusion LM literature reports.

- :func:`ar_perplexity`: exact perplexity of a causal LM on held-out sequences.
- :func:`generative_perplexity`: perplexity of *samples* under a causal reference model (MDLM,
  Sahoo et al., 2024, "Simple and Effective Masked Diffusion Language Models"; there
  GPT-2, here a reference model trained on a disjoint split with the same tokenizer).
- :func:`unigram_entropy`: per-sample entropy of the token histogram. Low-entropy, repetitive
  samples get a low gen-PPL, so gen-PPL is only meaningful next to it (Zheng et al., 2024,
  "Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate
  Categorical Sampling").

All log-probabilities are computed in float64 and every quantity is in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

CausalLM = Callable[[Tensor], Tensor]
"""Any ``ids [B, T] -> next-token logits [B, T, V]`` (position i predicts token i + 1)."""


def _ignore_mask(targets: Tensor, ignore_ids: Sequence[int]) -> Tensor:
    keep = torch.ones_like(targets, dtype=torch.bool)
    for i in ignore_ids:
        keep &= targets != i
    return keep


@torch.no_grad()
def sequence_nll(
    model: CausalLM,
    ids: Tensor,
    *,
    bos_id: int | None = None,
    ignore_ids: Sequence[int] = (),
) -> tuple[Tensor, Tensor]:
    """Summed negative log-likelihood ``-sum_i log p(x_i | x_<i)`` and token count per sequence.

    Without `bos_id` the first token only serves as context (L - 1 tokens are scored, as for
    packed held-out data that starts mid-document). With `bos_id` the model reads
    ``[BOS, x_1 .. x_{L-1}]`` and all L tokens are scored. Targets in `ignore_ids` (e.g. PAD)
    are not counted.
    """
    if ids.dim() != 2 or ids.shape[1] < 1:
        raise ValueError(f"ids must be [batch, length] with length >= 1, got {tuple(ids.shape)}")
    if bos_id is None:
        if ids.shape[1] < 2:
            raise ValueError("without bos_id a sequence needs at least 2 tokens to score one")
        inputs, targets = ids[:, :-1], ids[:, 1:]
    else:
        inputs = torch.cat((torch.full_like(ids[:, :1], bos_id), ids[:, :-1]), dim=1)
        targets = ids
    log_probs = model(inputs).to(torch.float64).log_softmax(-1)
    token_nll = -log_probs.gather(-1, targets[..., None]).squeeze(-1)
    keep = _ignore_mask(targets, ignore_ids)
    return (token_nll * keep).sum(-1), keep.sum(-1)


def ar_perplexity(
    model: CausalLM, batches: Iterable[Tensor], ignore_ids: Sequence[int] = ()
) -> float:
    """Exact perplexity ``exp(sum NLL / number of scored tokens)`` of a causal LM over batches of
    held-out sequences (each sequence's first token is context only)."""
    total_nll, total_tokens = 0.0, 0
    for ids in batches:
        nll, count = sequence_nll(model, ids, ignore_ids=ignore_ids)
        total_nll += float(nll.sum())
        total_tokens += int(count.sum())
    if total_tokens == 0:
        raise ValueError("no tokens to score (empty batches, or every target ignored)")
    return math.exp(total_nll / total_tokens)


@dataclass
class GenerativePerplexity:
    """Gen-PPL of a set of samples: pooled over all tokens and per sample."""

    ppl: float  # exp(sum of NLL / sum of tokens), the pooled value papers report
    per_sample: Tensor  # [B] exp(NLL_b / tokens_b)
    nll: Tensor  # [B] summed NLL in nats
    n_tokens: Tensor  # [B] scored tokens


def generative_perplexity(
    samples: Tensor,
    reference: CausalLM,
    *,
    bos_id: int | None = None,
    mask_id: int | None = None,
    ignore_ids: Sequence[int] = (),
    batch_size: int = 64,
) -> GenerativePerplexity:
    """Perplexity of generated `samples` ``[B, L]`` under a causal `reference` model.

    Samples that still hold `mask_id` (unfinished sampling) are rejected. Always report it with
    :func:`unigram_entropy` of the same samples.
    """
    if mask_id is not None and bool((samples == mask_id).any()):
        raise ValueError(f"samples still contain the mask token {mask_id}; finish sampling first")
    nll, count = [], []
    for chunk in samples.split(batch_size):
        n, c = sequence_nll(reference, chunk, bos_id=bos_id, ignore_ids=ignore_ids)
        nll.append(n)
        count.append(c)
    nll, count = torch.cat(nll), torch.cat(count)
    pooled = math.exp(float(nll.sum()) / max(int(count.sum()), 1))
    return GenerativePerplexity(pooled, (nll / count.clamp_min(1)).exp(), nll, count)


def unigram_perplexity(
    train: Tensor, held_out: Tensor, vocab_size: int, ignore_ids: Sequence[int] = ()
) -> float:
    """Perplexity on ``held_out`` of the unigram model of ``train`` (token frequencies with
    add-one smoothing over ``vocab_size`` symbols; ``ignore_ids`` neither counted nor scored):
    the baseline any trained language model must beat."""
    keep_train = _ignore_mask(train, ignore_ids).to(torch.float64)
    counts = torch.ones(vocab_size, dtype=torch.float64, device=train.device)
    counts.scatter_add_(0, train.reshape(-1), keep_train.reshape(-1))
    log_p = (counts / counts.sum()).log()
    keep = _ignore_mask(held_out, ignore_ids).reshape(-1)
    nll = -log_p.to(held_out.device)[held_out.reshape(-1)[keep]]
    if nll.numel() == 0:
        raise ValueError("unigram_perplexity: no held-out tokens to score")
    return float(nll.mean().exp())


def unigram_entropy(samples: Tensor, ignore_ids: Sequence[int] = ()) -> Tensor:
    """Entropy ``-sum_v p_v log p_v`` (nats) of each sample's token histogram, shape ``[B]``.

    A sample repeating one token has entropy 0; n distinct tokens used equally often give log n.
    """
    if samples.dim() != 2:
        raise ValueError(f"samples must be [batch, length], got {tuple(samples.shape)}")
    keep = _ignore_mask(samples, ignore_ids).to(torch.float64)
    n_symbols = int(samples.max()) + 1 if samples.numel() else 1
    counts = torch.zeros(samples.shape[0], n_symbols, dtype=torch.float64, device=samples.device)
    counts.scatter_add_(1, samples, keep)
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1)
    return -torch.special.xlogy(p, p).sum(-1)
