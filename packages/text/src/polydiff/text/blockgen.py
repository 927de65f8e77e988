"""BlockGen / BD3LM: block diffusion trained on a mixture of block sizes.

Arriola et al., 2025, "Block Diffusion: Interpolating Between Autoregressive and Diffusion
Language Models" (BD3LM): blocks are generated left to right, each by masked diffusion given the
clean blocks before it; training runs all blocks in one pass over ``concat(x_t, x0)``. BlockGen
trains the same network on a mixture of block sizes (e.g. 5% block size 1, 95% block size 16);
the block-size-1 batches teach it an AR mode used to verify sampled blocks (ARPC).

- config :class:`BlockGenConfig` (network, ``block_sizes`` mixture, clipped times ``t_range``,
  the block size used for sampling);
- loss: :func:`~polydiff.text.losses.block_diffusion_nelbo` with one block size per batch drawn
  from the mixture (:func:`~polydiff.text.losses.sample_block_size`);
- sampling: :func:`~polydiff.text.sampling.sample_blocks`: block by block with the exact KV cache
  of finished blocks, any core masked solver per block, or ARPC (``arpc=True``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from polydiff.core.discrete import MaskedDiffusion, get_discrete_schedule
from polydiff.core.method import register_method
from polydiff.text.losses import (
    HELD_OUT_TIME_SAMPLES,
    block_diffusion_nelbo,
    mixture_nll_bound,
    nelbo_perplexity,
    sample_block_size,
)
from polydiff.text.method import TextConfig, TextMethod, masked_path, sampling_options
from polydiff.text.nets import TransformerConfig
from polydiff.text.sampling import SampleResult, sample_blocks

__all__ = ["BlockGen", "BlockGenConfig"]


@dataclass
class BlockGenConfig(TextConfig):
    """``block_sizes``: training mixture {block size: weight}; ``t_range``: BD3LM's clipped
    per-block times t_b ~ U[beta, omega]; ``sample_block_size``: block size at sampling and
    evaluation time (default: the largest of the mixture). ``block_sizes`` is saved as a JSON
    object (string keys) and read back with integer keys."""

    transformer: TransformerConfig
    block_sizes: dict[int, float] = field(default_factory=lambda: {1: 0.05, 16: 0.95})
    t_range: tuple[float, float] = (1e-3, 1.0)
    sample_block_size: int | None = None
    schedule: str = "loglinear"
    eps: float = 1e-3

    def __post_init__(self) -> None:
        self.block_sizes = {int(b): float(w) for b, w in self.block_sizes.items()}
        if not self.block_sizes or any(b < 1 or w <= 0 for b, w in self.block_sizes.items()):
            raise ValueError(
                f"block_sizes needs sizes >= 1 with positive weights: {self.block_sizes}"
            )
        self.t_range = (float(self.t_range[0]), float(self.t_range[1]))
        if not 0.0 <= self.t_range[0] < self.t_range[1] <= 1.0:
            raise ValueError(f"t_range={self.t_range} must satisfy 0 <= beta < omega <= 1")
        if self.sample_block_size is None:
            self.sample_block_size = max(self.block_sizes)
        get_discrete_schedule(self.schedule, self.eps)


@register_method
class BlockGen(TextMethod):
    """Block diffusion with a block-size mixture, an exact block KV cache and ARPC."""

    name = "blockgen"
    config_class = BlockGenConfig

    @classmethod
    def make_config(
        cls,
        transformer: TransformerConfig,
        *,
        block_sizes: Mapping[int, float] | Sequence[int] | None = None,
        weights: Sequence[float] | None = None,
        **options: Any,
    ) -> BlockGenConfig:
        """``block_sizes`` is the mixture {size: weight}, or a list of sizes with their
        ``weights``; the context must be a multiple of the largest block size (training cuts
        the sequences into blocks)."""
        if weights is not None:
            sizes = list(block_sizes or ())
            if not sizes or len(sizes) != len(weights):
                raise ValueError(
                    f"block_sizes {sizes} and weights {list(weights)} need equal, nonzero length"
                )
            block_sizes = dict(zip(sizes, weights, strict=True))
        if block_sizes is not None:
            options["block_sizes"] = dict(block_sizes)
            largest, seq_len = max(options["block_sizes"]), transformer.max_seq_len
            if seq_len % largest:
                raise ValueError(
                    f"seq_len={seq_len} must be a multiple of the largest block size {largest}"
                )
        return cls.config_class(transformer, **options)

    @property
    def path(self) -> MaskedDiffusion:
        return masked_path(self.tokenizer, self.config.schedule, self.config.eps)

    def loss_fn(self, net: nn.Module, batch) -> dict[str, Tensor]:
        """BD3LM NELBO per token with this batch's block size drawn from the mixture."""
        x0 = self._tokens(batch)
        b = sample_block_size(self.config.block_sizes)
        out = block_diffusion_nelbo(
            net, x0, self.path, b, t_range=self.config.t_range, loss_mask=self.loss_mask(x0)
        )
        return {"loss": out.loss, "block_size": torch.tensor(float(b))}

    @torch.no_grad()
    def perplexity_bound_estimate(
        self,
        batches: Iterable[Tensor],
        block_size: int | None = None,
        n_time_samples: int = HELD_OUT_TIME_SAMPLES,
        generator=None,
    ) -> tuple[float, float]:
        """exp(NELBO / token) of the block model with ``block_size`` (default: the sampling
        block size) and its standard error. With block size 1 a token is either clean (no
        loss) or masked and predicted from its prefix, so the bound is (1 - eps) x the AR
        mode's NLL in expectation."""
        return nelbo_perplexity(
            self.net, batches, self.path, pad_id=self.tokenizer.pad_id,
            block_size=block_size or self.config.sample_block_size,
            n_time_samples=n_time_samples, generator=generator,
        )  # fmt: skip

    @torch.no_grad()
    def mixture_perplexity_bound(
        self, batches: Iterable[Tensor], n_time_samples: int = 4, generator=None
    ) -> float:
        """Perplexity bound of the mixture ``p = sum_b gamma_b p_b`` over the training block
        sizes (BlockGen): per sequence ``-log sum_b gamma_b exp(-NELBO_b(x))``
        (:func:`~polydiff.text.losses.mixture_nll_bound`), each NELBO_b averaged over
        ``n_time_samples`` antithetic draws, then ``exp(sum / tokens)``. The combination is
        concave in the NELBOs, so Monte-Carlo noise biases it slightly low: use enough draws."""
        if n_time_samples < 1:
            raise ValueError(f"n_time_samples={n_time_samples} must be at least 1")
        mixture = self.config.block_sizes
        total, tokens = 0.0, 0.0
        for x0 in batches:
            mask = self.loss_mask(x0)
            nll = {}
            for b in mixture:
                draws = [
                    block_diffusion_nelbo(
                        self.net, x0, self.path, b, loss_mask=mask, generator=generator
                    ).nelbo
                    for _ in range(n_time_samples)
                ]
                nll[b] = torch.stack(draws).mean(0)
            total += float(mixture_nll_bound(nll, mixture).sum())
            tokens += float(mask.sum())
        if tokens == 0:
            raise ValueError("no tokens to evaluate (empty batches, or every token is padding)")
        return math.exp(total / tokens)

    @sampling_options
    def sample(
        self,
        n: int,
        length: int | None = None,
        *,
        steps: int = 16,
        block_size: int | None = None,
        solver: str = "mdlm",
        arpc: bool = False,
        use_cache: bool = True,
        skip_unchanged: bool | None = None,
        prompt: str | Sequence[int] | Tensor | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Sample block by block, ``steps`` steps per block (see
        :func:`~polydiff.text.sampling.sample_blocks`)."""
        return sample_blocks(
            self.net, self.path, n, length or self.context,
            block_size or self.config.sample_block_size, steps=steps, solver=solver, arpc=arpc,
            use_cache=use_cache, skip_unchanged=skip_unchanged,
            prompt=self.encode_prompt(prompt), temperature=temperature, top_p=top_p,
            generator=generator, device=self.device,
        )  # fmt: skip
