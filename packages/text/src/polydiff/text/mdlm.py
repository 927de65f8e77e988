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

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polydiff.core.discrete import MaskedDiffusion, get_discrete_schedule
from polydiff.core.method import register_method
from polydiff.text.method import DiffusionLM, TextConfig, sampling_options
from polydiff.text.nets import DiffusionTransformer, TransformerConfig
from polydiff.text.sampling import SampleResult, sample_diffusion

__all__ = ["MDLM", "MDLMConfig"]


@dataclass
class MDLMConfig(TextConfig):
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


@register_method
class MDLM(DiffusionLM):
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

    @sampling_options
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
        cfg_interval: tuple[float, float] | None = None,
        solver_kwargs: dict | None = None,
        generator: torch.Generator | None = None,
    ) -> SampleResult:
        """Sample ``n`` sequences (default length: the model's context) with a core solver;
        see :func:`~polydiff.text.sampling.sample_diffusion`. A text prompt is encoded as
        [BOS] + tokens; ``cfg_scale`` w > 0 applies SMDM's unsupervised CFG to the prompt
        (p_c^(1+w) / p_u^w; ``cfg_interval=(t_lo, t_hi)``: only at those times)."""
        return sample_diffusion(
            self.net, self.path, n, length or self.context, steps=steps, solver=solver,
            prompt=self.encode_prompt(prompt), infill=infill, temperature=temperature,
            top_p=top_p, cfg_scale=cfg_scale, cfg_interval=cfg_interval,
            solver_kwargs=solver_kwargs, generator=generator, device=self.device,
        )  # fmt: skip
