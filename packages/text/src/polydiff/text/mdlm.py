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

from dataclasses import dataclass

from polydiff.core.discrete import MaskedDiffusion, get_discrete_schedule
from polydiff.core.method import register_method
from polydiff.text.method import DiffusionLM, TextConfig, masked_path
from polydiff.text.nets import TransformerConfig

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
    """Masked diffusion LM: ``loss_fn`` to train, ``sample`` and ``perplexity_bound`` to use.
    ``sample(n, length, prompt=..., cfg_scale=w)`` with w > 0 applies SMDM's unsupervised CFG
    to the prompt (p_c^(1+w) / p_u^w; ``cfg_interval=(t_lo, t_hi)``: only at those times)."""

    name = "mdlm"
    config_class = MDLMConfig
    default_solver = "mdlm_cached"

    @property
    def path(self) -> MaskedDiffusion:
        return masked_path(self.tokenizer, self.config.schedule, self.config.eps)
