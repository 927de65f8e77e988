"""Networks of polydiff.text: the bidirectional denoiser, the causal LM and block masks."""

from polydiff.core.nn import apply_rotary, rotary_cos_sin
from polydiff.text.nets.masks import block_causal_mask, block_diffusion_mask
from polydiff.text.nets.transformer import (
    CausalTransformer,
    DiffusionTransformer,
    KVCache,
    TransformerConfig,
)

__all__ = [
    "CausalTransformer",
    "DiffusionTransformer",
    "KVCache",
    "TransformerConfig",
    "apply_rotary",
    "block_causal_mask",
    "block_diffusion_mask",
    "rotary_cos_sin",
]
