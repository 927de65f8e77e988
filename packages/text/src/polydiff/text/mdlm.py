"""MDLM: masked diffusion language model (Sahoo et al., 2024, "Simple and Effective Masked
Diffusion Language Models"; SMDM, Nie et al., 2025, "Scaling up Masked Diffusion Models on Text").

The whole method in one place:
- config :class:`MDLMConfig` (network size, noise schedule, t_min of the time sampler);
- network: the bidirectional :class:`~polydiff.text.nets.DiffusionTransformer` (no time
  conditioning by default, as MDLM trains; the mask count already tells the noise level);
- process: :class:`~polydiff.core.discrete.MaskedDiffusion` with the tokenizer's ``<mask>`` as
  absorbing state, SUBS parameterization (mask never predicted, unmasked tokens carried over);
- loss: the continuous-time NELBO with antithetic times (MDLM Eq. 10;
  :func:`~polydiff.text.losses.diffusion_nelbo`);
- sampling: any core masked solver (ancestral with no-update caching "mdlm_cached",
  first-hitting, confidence top-k "llada", ReMDM remasking) with prompts, infilling,
  temperature / top-p and unsupervised CFG (:func:`~polydiff.text.sampling.sample_diffusion`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core.discrete import MaskedDiffusion, get_discrete_schedule
from polydiff.text.losses import diffusion_nelbo, nelbo_perplexity
from polydiff.text.method import TextMethod, register_method
from polydiff.text.nets import DiffusionTransformer, TransformerConfig
from polydiff.text.sampling import SampleResult, sample_diffusion

__all__ = ["MDLM", "MDLMConfig"]


@dataclass
class MDLMConfig:
    """MDLM settings. ``schedule``: "loglinear" (alpha = 1 - (1 - eps) t, MDLM's default),
    "cosine" or "cosine_maskgit"; ``t_min``: lower end of the training times t ~ U[t_min, 1]."""

    transformer: TransformerConfig
    schedule: str = "loglinear"
    eps: float = 1e-3
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        get_discrete_schedule(self.schedule, self.eps)  # validates the name
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min={self.t_min} must be in [0, 1)")


class _PromptMixin:
    """Prompt handling shared by the diffusion methods: text is encoded as [BOS] + tokens."""

    def encode_prompt(self, prompt: str | Sequence[int] | Tensor | None) -> Tensor | None:
        if prompt is None or not isinstance(prompt, str):
            return None if prompt is None else torch.as_tensor(prompt, dtype=torch.long)
        return torch.tensor([self.tokenizer.bos_id, *self.tokenizer.encode(prompt)])

    def decode(self, tokens: Tensor) -> list[str]:
        """Text of each sample; special tokens (BOS/EOS/PAD) are dropped."""
        return [self.tokenizer.decode(row.tolist()) for row in tokens]


class _DiffusionLM(_PromptMixin, TextMethod):
    """Training loss and perplexity bound shared by the diffusion LMs whose ``path`` is a core
    discrete path (MDLM, UDLM): both are the continuous-time NELBO of that path."""

    def loss_fn(self, net: nn.Module, batch) -> dict[str, Tensor]:
        """NELBO per token (nats) of a batch of token ids [B, L], padding not counted."""
        x0 = self._tokens(batch)
        out = diffusion_nelbo(
            net, x0, self.path, loss_mask=self.loss_mask(x0), t_min=self.config.t_min
        )
        return {"loss": out.loss}

    @torch.no_grad()
    def perplexity_bound(
        self, batches: Iterable[Tensor], n_time_samples: int = 1, generator=None
    ) -> float:
        """exp(NELBO / token) on held-out batches: an upper bound on the model's perplexity."""
        return nelbo_perplexity(
            self.net, batches, self.path, pad_id=self.tokenizer.pad_id,
            n_time_samples=n_time_samples, generator=generator,
        )  # fmt: skip


@register_method
class MDLM(_DiffusionLM):
    """Masked diffusion LM: ``loss_fn`` to train, ``sample`` and ``perplexity_bound`` to use."""

    name = "mdlm"
    config_class = MDLMConfig

    def build_net(self) -> nn.Module:
        return DiffusionTransformer(self.config.transformer)

    @property
    def path(self) -> MaskedDiffusion:
        schedule = get_discrete_schedule(self.config.schedule, self.config.eps)
        V = self.tokenizer.vocab_size
        return MaskedDiffusion(V, mask_index=self.tokenizer.mask_id, schedule=schedule)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int | None = None,
        *,
        steps: int = 128,
        solver: str = "mdlm_cached",
        prompt: str | Sequence[int] | Tensor | None = None,
        infill: tuple[Tensor, Tensor] | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        cfg_scale: float = 0.0,
        solver_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Sample ``n`` sequences (default length: the model's context) with a core solver;
        see :func:`~polydiff.text.sampling.sample_diffusion`. A text prompt is encoded as
        [BOS] + tokens; ``cfg_scale`` > 0 applies unsupervised CFG to the prompt."""
        device = next(self.net.parameters()).device
        return sample_diffusion(
            self.net, self.path, n, length or self.config.transformer.max_seq_len, steps=steps,
            solver=solver, prompt=self.encode_prompt(prompt), infill=infill,
            temperature=temperature, top_p=top_p, cfg_scale=cfg_scale,
            solver_kwargs=solver_kwargs, generator=generator, device=device,
        )  # fmt: skip
