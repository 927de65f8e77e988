"""UDLM: uniform-noise diffusion language model (Schiff et al., 2025, "Simple Guidance Mechanisms
for Discrete Diffusion Models"; Sahoo et al., 2025, "The Diffusion Duality").

- config :class:`UDLMConfig`; network: :class:`~polydiff.text.nets.DiffusionTransformer`, time
  conditioned (adaLN) by default: with uniform noise the corrupted tokens look like clean ones;
- process: :class:`~polydiff.core.discrete.UniformDiffusion` over the whole vocabulary;
- loss: the UDLM continuous-time NELBO (Eq. 18) with antithetic times;
- the network trained by this loss is the *leave-one-out* denoiser p(x^l | z_t^{-l}) ("Uniform
  Diffusion Models Revisited"); :meth:`UDLM.posterior_logits` converts it to p(x^l | z_t) with
  ``logit[z_t] += log1p(K alpha / (1 - alpha))``;
- sampling: the core's "udlm" ancestral solver (it takes the leave-one-out output as is), with
  prompts / infilling (fixed positions re-imposed after every step) and temperature / top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from polydiff.core.discrete import UniformDiffusion, get_discrete_schedule
from polydiff.core.method import register_method
from polydiff.text.method import DiffusionLM, TextConfig
from polydiff.text.nets import TransformerConfig

__all__ = ["UDLM", "UDLMConfig", "udlm_transformer"]


@dataclass
class UDLMConfig(TextConfig):
    """UDLM settings (``transformer.time_conditioning`` "adaln" recommended)."""

    transformer: TransformerConfig
    schedule: str = "loglinear"
    eps: float = 1e-3
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        get_discrete_schedule(self.schedule, self.eps)
        if not 0.0 <= self.t_min < 1.0:
            raise ValueError(f"t_min={self.t_min} must be in [0, 1)")


def udlm_transformer(vocab_size: int, **kwargs) -> TransformerConfig:
    """The default UDLM network config: adaLN time conditioning."""
    return TransformerConfig(vocab_size, **{"time_conditioning": "adaln", **kwargs})


@register_method
class UDLM(DiffusionLM):
    """Uniform diffusion LM: ``loss_fn``, ``posterior_logits`` (leave-one-out conversion),
    ``sample`` and ``perplexity_bound``."""

    name = "udlm"
    config_class = UDLMConfig
    # uniform noise: corrupted tokens look clean, only the time says how many there are
    time_conditioning = "adaln"
    default_solver = "udlm"  # ancestral sampling from uniform noise: the core's uniform solver

    @property
    def path(self) -> UniformDiffusion:
        schedule = get_discrete_schedule(self.config.schedule, self.config.eps)
        return UniformDiffusion(self.tokenizer.vocab_size, schedule=schedule)

    def posterior_logits(self, z_t: Tensor, t: Tensor) -> Tensor:
        """log p(x^l | z_t) (up to a constant per position) from the network's leave-one-out
        output, for scoring and for samplers that want the full posterior."""
        return self.path.loo_to_posterior_logits(self.net(z_t, t), z_t, t)
