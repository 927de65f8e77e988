"""Network building blocks shared by the domains: time / noise embeddings, FiLM, residual and
attention blocks, transformer blocks with adaptive layer norm and a 1-D temporal U-Net.

Each piece is small and cites the paper it implements; domain networks compose them (keeping
their own state-dict keys: the blocks' submodule names are part of the checkpoint format).
"""

from polydiff.core.nn.blocks import (
    ChannelLayerNorm,
    ResBlock,
    SelfAttention,
    attend_positions,
    conv_nd,
    norm_layer,
)
from polydiff.core.nn.embeddings import GaussianFourierProjection, TimeMLP, sinusoidal_embedding
from polydiff.core.nn.film import FiLM
from polydiff.core.nn.transformer import (
    Attention,
    TransformerBlock,
    apply_rotary,
    rotary_cos_sin,
)
from polydiff.core.nn.unet1d import TemporalUNet, TemporalUNetConfig

__all__ = [
    "Attention",
    "ChannelLayerNorm",
    "FiLM",
    "GaussianFourierProjection",
    "ResBlock",
    "SelfAttention",
    "TemporalUNet",
    "TemporalUNetConfig",
    "TimeMLP",
    "TransformerBlock",
    "apply_rotary",
    "attend_positions",
    "conv_nd",
    "norm_layer",
    "rotary_cos_sin",
    "sinusoidal_embedding",
]
