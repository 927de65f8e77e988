"""Attention masks of block diffusion (boolean, True = the query may attend to the key).

Arriola et al., 2025, "Block Diffusion: Interpolating Between Autoregressive and Diffusion Language
Models" (BD3LM), Sec. 3.2 and App. B.3: the training input is ``concat(x_t, x_0)`` of length 2L
and the mask is the union of
- M_BD (block-diagonal): noisy block b attends to noisy block b,
- M_OBC (offset block-causal): noisy block b attends to the clean blocks < b,
- M_BC (block-causal): clean block b attends to the clean blocks <= b.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _block_index(length: int, block_size: int, device: torch.device | str | None) -> Tensor:
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be at least 1")
    return torch.arange(length, device=device) // block_size


def block_causal_mask(
    length: int, block_size: int, device: torch.device | str | None = None
) -> Tensor:
    """``[L, L]``: token i attends to token j iff block(j) <= block(i).

    Block size 1 is the causal mask; block size L is full bidirectional attention.
    """
    block = _block_index(length, block_size, device)
    return block[None, :] <= block[:, None]


def block_diffusion_mask(
    length: int, block_size: int, device: torch.device | str | None = None
) -> Tensor:
    """``[2L, 2L]`` mask of the BD3LM training input ``concat(x_t, x_0)`` (see module doc)."""
    block = _block_index(length, block_size, device)
    same = block[:, None] == block[None, :]  # M_BD
    earlier = block[None, :] < block[:, None]  # M_OBC: key block strictly before query block
    causal = block[None, :] <= block[:, None]  # M_BC
    top = torch.cat((same, earlier), dim=1)  # queries in x_t
    bottom = torch.cat((torch.zeros_like(same), causal), dim=1)  # queries in x_0 never see x_t
    return torch.cat((top, bottom), dim=0)
