"""The autoregressive baseline: a causal transformer of the same size as the denoisers.

It is the yardstick of the benchmark (its perplexity is exact, the diffusion models report a
bound) and, trained on the disjoint ``reference`` split, the reference model of generative
perplexity. Training: next-token cross-entropy (padding not counted); sampling: KV-cached
decoding with float64 Gumbel-max (:meth:`~polydiff.text.nets.CausalTransformer.generate`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core.method import register_method
from polydiff.text.method import TextConfig, TextMethod, sampling_options
from polydiff.text.metrics import ar_perplexity
from polydiff.text.nets import CausalTransformer, TransformerConfig
from polydiff.text.sampling import SampleResult

__all__ = ["AR", "ARConfig"]


@dataclass
class ARConfig(TextConfig):
    transformer: TransformerConfig


@register_method
class AR(TextMethod):
    """Causal LM: ``loss_fn`` (next-token NLL), ``perplexity`` (exact) and ``sample``."""

    name = "ar"
    config_class = ARConfig

    def build_net(self) -> nn.Module:
        return CausalTransformer(self.config.transformer)

    def loss_fn(self, net: nn.Module, batch) -> dict[str, Tensor]:
        """Mean next-token NLL (nats) over non-padding targets; the first token is context."""
        x0 = self._tokens(batch)
        logits = net(x0[:, :-1])
        targets = x0[:, 1:].masked_fill(~self.loss_mask(x0[:, 1:]), -100)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return {"loss": loss}

    @torch.no_grad()
    def perplexity(self, batches: Iterable[Tensor]) -> float:
        """Exact perplexity on held-out batches (padding ignored)."""
        return ar_perplexity(self.net, batches, ignore_ids=(self.tokenizer.pad_id,))

    def held_out_perplexity(
        self, batches: Iterable[Tensor], *, n_time_samples: int = 0, generator=None
    ) -> dict[str, float]:
        """``{"ppl": exact perplexity}`` (a causal LM needs no time draws)."""
        return {"ppl": self.perplexity(batches)}

    @sampling_options
    def sample(
        self,
        n: int,
        length: int | None = None,
        *,
        steps: int | None = None,
        prompt: str | Sequence[int] | Tensor | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """``n`` sequences of ``length`` tokens (prompt included; default the context), each
        continuing the prompt or a lone BOS. One network call per new token (KV cache); the
        ``<mask>`` id of the shared tokenizer is never sampled. ``steps`` is ignored (taken so
        that the diffusion methods' options fit): one step per token."""
        length = length or self.context
        device = self.device
        start = self.encode_prompt(prompt)
        if start is None:
            start = torch.tensor([self.tokenizer.bos_id])
        if start.shape[-1] > length:
            raise ValueError(
                f"prompt of {start.shape[-1]} tokens is longer than the context of {length} tokens"
            )
        start = start.to(device).expand(n, -1) if start.dim() == 1 else start.to(device)
        new = length - start.shape[1]
        t0 = time.perf_counter()
        banned = (self.tokenizer.mask_id,)  # never in text: the AR model has no use for it
        tokens = (
            self.net.generate(start, new, temperature, generator, top_p, banned) if new else start
        )
        return SampleResult(tokens, max(new, 1), float(max(new, 1)), time.perf_counter() - t0)
