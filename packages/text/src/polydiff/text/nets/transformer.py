"""Transformers for text diffusion: a bidirectional denoiser and a causal LM of the same size.

Both share one pre-norm backbone: token embedding, blocks of rotary self-attention
(``scaled_dot_product_attention``) and a GELU MLP, final norm, output head.

- :class:`DiffusionTransformer` predicts x0 logits from a noisy sequence. Time conditioning is
  optional: ``"adaln"`` (adaptive LayerNorm with zero-initialised gates, Peebles & Xie, 2023,
  "Scalable Diffusion Models with Transformers", Sec. 3.2 "adaLN-Zero"), ``"add"`` (time embedding
  added to the token embeddings) or ``"none"`` (MDLM/BD3LM train without it). It also runs block
  diffusion (Arriola et al., 2025, "Block Diffusion: Interpolating Between Autoregressive and
  Diffusion Language Models", Sec. 3 and App. B): the 2L-token training forward and the exact KV
  cache of completed clean blocks.
- :class:`CausalTransformer` is the autoregressive baseline and the reference model of generative
  perplexity, with a KV cache for decoding.

Rotary position embeddings: Su et al., 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding", Eq. 34 (the rotate-half form of GPT-NeoX). Positions are explicit so that x_t and x_0
in the block-diffusion input share positions 0..L-1. The blocks, rotary attention and time
embedding are ``polydiff.core.nn``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import Tensor, nn

from polydiff.core.discrete import top_p_filter
from polydiff.core.nn import TimeMLP, TransformerBlock, rotary_cos_sin, sinusoidal_embedding
from polydiff.text.nets.masks import block_diffusion_mask

TimeConditioning = Literal["none", "adaln", "add"]


@dataclass
class TransformerConfig:
    """Size and options of a text transformer (both kinds use the same config).

    The defaults (d_model 192, 4 layers) give ~2M parameters with the 260-token byte vocabulary,
    the CPU default; GPU scale is e.g. ``d_model=768, n_layers=12, n_heads=12`` (~85M + vocab).
    """

    vocab_size: int
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    mlp_ratio: float = 4.0
    max_seq_len: int = 256  # longest input the model is meant for (checked in forward)
    dropout: float = 0.0
    time_conditioning: TimeConditioning = "none"
    rope_base: float = 10_000.0
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size={self.vocab_size} must be at least 2")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads} "
                "with an even head dimension (rotary embeddings rotate pairs)"
            )
        if self.time_conditioning not in ("none", "adaln", "add"):
            raise ValueError(
                f"time_conditioning={self.time_conditioning!r}: expected 'none', 'adaln' or 'add'"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TransformerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TransformerConfig fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, ``[B, n_heads, T, head_dim]`` each, for the T tokens seen.

    Immutable: methods return a new cache, so a cache can be reused (e.g. one prefix cache for
    many denoising steps) and reindexed along the batch (particles, beams).
    """

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    @property
    def length(self) -> int:
        return self.keys[0].shape[-2]

    def index_select(self, batch_index: Tensor) -> KVCache:
        """The cache of the batch rows `batch_index` (e.g. resampled SMC particles)."""
        return KVCache(
            tuple(k.index_select(0, batch_index) for k in self.keys),
            tuple(v.index_select(0, batch_index) for v in self.values),
        )


class TransformerBackbone(nn.Module):
    """Embedding, blocks, final norm and head, run over explicit positions and masks."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.embed = nn.Embedding(config.vocab_size, d)
        self.time_embed = None
        if config.time_conditioning != "none":
            self.time_embed = TimeMLP(d, d)
        cond_dim = d if config.time_conditioning == "adaln" else None
        self.blocks = nn.ModuleList(
            TransformerBlock(d, config.n_heads, config.mlp_ratio, config.dropout, cond_dim)
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_length(self, total: int) -> None:
        if total > self.config.max_seq_len:
            raise ValueError(
                f"sequence of {total} tokens is longer than the model's max_seq_len="
                f"{self.config.max_seq_len}"
            )

    def _time_condition(self, t: Tensor | None, batch: int, length: int) -> Tensor | None:
        """Embedding of t (``[B]`` per sequence or ``[B, T]`` per token) as ``[B, 1 or T, d]``."""
        if self.time_embed is None:
            return None
        if t is None:
            raise ValueError(
                f"this model uses time conditioning ({self.config.time_conditioning!r}); pass t"
            )
        t = t.reshape(batch, -1) if t.dim() > 0 else t.expand(batch)[:, None]
        if t.shape[1] not in (1, length):
            raise ValueError(f"t has shape {tuple(t.shape)}; expected [B] or [B, {length}]")
        emb = sinusoidal_embedding(t, self.config.d_model, scale=1000.0)
        emb = emb.to(self.embed.weight.dtype)
        return self.time_embed(emb)

    def run(
        self,
        ids: Tensor,
        positions: Tensor,
        t: Tensor | None = None,
        attn_mask: Tensor | None = None,
        cache: KVCache | None = None,
        is_causal: bool = False,
    ) -> tuple[Tensor, KVCache]:
        """Logits ``[B, T, V]`` of `ids` at `positions`, attending to `cache` then themselves."""
        B, T = ids.shape
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_base)
        cond = self._time_condition(t, B, T)
        x = self.embed(ids)
        adaln = self.config.time_conditioning == "adaln"
        if cond is not None and not adaln:
            x = x + cond
        keys, values = [], []
        for i, block in enumerate(self.blocks):
            past = None if cache is None else (cache.keys[i], cache.values[i])
            x, (k, v) = block(
                x, cond if adaln else None, cos=cos, sin=sin, attn_mask=attn_mask, past=past,
                is_causal=is_causal,
            )  # fmt: skip
            keys.append(k)
            values.append(v)
        return self.head(self.norm(x)), KVCache(tuple(keys), tuple(values))


class DiffusionTransformer(nn.Module):
    """Bidirectional denoiser: logits of x0 given a noisy sequence (and optionally its time)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = TransformerBackbone(config)

    def num_parameters(self) -> int:
        return self.backbone.num_parameters()

    def forward(
        self, x_t: Tensor, t: Tensor | None = None, attn_mask: Tensor | None = None
    ) -> Tensor:
        """Logits ``[B, L, V]`` for ``x_t [B, L]``; `t` is ``[B]`` or per token ``[B, L]``."""
        L = x_t.shape[1]
        self.backbone._check_length(L)
        positions = torch.arange(L, device=x_t.device)
        return self.backbone.run(x_t, positions, t, attn_mask)[0]

    # --- block diffusion (BD3LM) ---------------------------------------------------------------

    def forward_block_diffusion(
        self, x_t: Tensor, x0: Tensor, block_size: int, t: Tensor | None = None
    ) -> Tensor:
        """BD3LM training forward: one pass over ``concat(x_t, x0)`` (2L tokens, both halves at
        positions 0..L-1) with :func:`block_diffusion_mask`; returns the logits of the x_t half.

        Noisy block b sees itself and the clean blocks < b, so all blocks train in one pass.
        With time conditioning the clean half is conditioned on t = 0.
        """
        B, L = x_t.shape
        self.backbone._check_length(L)
        positions = torch.arange(L, device=x_t.device).repeat(2)
        mask = block_diffusion_mask(L, block_size, device=x_t.device)
        t2 = None
        if t is not None:
            t_tokens = t.reshape(B, -1).expand(B, L)
            t2 = torch.cat((t_tokens, torch.zeros_like(t_tokens)), dim=1)
        logits, _ = self.backbone.run(torch.cat((x_t, x0), dim=1), positions, t2, mask)
        return logits[:, :L]

    def autoregressive_logits(self, x0: Tensor, mask_id: int, t: Tensor | None = None) -> Tensor:
        """Logits of every token given only the tokens before it, in one pass: block diffusion
        with block size 1 and every noisy token masked. This is BlockGen's AR mode (a model
        trained with some block-size-1 batches scores tokens autoregressively, e.g. to verify a
        sampled block in ARPC). With time conditioning t defaults to 1 (fully masked)."""
        if self.backbone.time_embed is not None and t is None:
            t = torch.ones(x0.shape[0], dtype=torch.float32, device=x0.device)
        return self.forward_block_diffusion(torch.full_like(x0, mask_id), x0, 1, t)

    def _clean_time(self, ids: Tensor) -> Tensor | None:
        return (
            None
            if self.backbone.time_embed is None
            else ids.new_zeros(ids.shape, dtype=torch.float32)
        )

    def cache_clean_block(
        self, x0_block: Tensor, cache: KVCache | None = None, causal: bool = False
    ) -> KVCache:
        """Append a completed clean block to the KV cache (one forward over the block).

        The block attends to the cached blocks and to itself, exactly as clean blocks do under
        the block-causal half of the training mask, so cached sampling equals the 2L forward.
        ``causal=True`` builds the cache of the AR mode instead (clean tokens causal, as in
        :meth:`autoregressive_logits`), the prefix that :meth:`verify_block` needs.
        """
        start = 0 if cache is None else cache.length
        T = x0_block.shape[1]
        self.backbone._check_length(start + T)
        positions = torch.arange(start, start + T, device=x0_block.device)
        mask = None
        if causal:
            keys = torch.arange(start + T, device=x0_block.device)
            mask = keys[None, :] <= positions[:, None]
        clean_t = self._clean_time(x0_block)
        return self.backbone.run(x0_block, positions, clean_t, attn_mask=mask, cache=cache)[1]

    def verify_block(
        self, x0_block: Tensor, mask_id: int, ar_cache: KVCache | None = None
    ) -> Tensor:
        """AR-mode logits of each token of a clean block given the tokens before it: the cached
        causal prefix (``cache_clean_block(..., causal=True)``) and the block's earlier tokens.

        One forward over ``concat(masks, x0_block)`` with the block-size-1 mask of
        :func:`block_diffusion_mask` restricted to this block, so it equals
        ``autoregressive_logits(full_sequence)`` on the block (tested). BlockGen's ARPC scores
        sampled blocks with it."""
        start = 0 if ar_cache is None else ar_cache.length
        B, T = x0_block.shape
        self.backbone._check_length(start + T)
        device = x0_block.device
        positions = torch.arange(start, start + T, device=device).repeat(2)
        inner = block_diffusion_mask(T, 1, device=device)  # [2T, 2T]
        prefix = torch.ones(2 * T, start, dtype=torch.bool, device=device)
        mask = torch.cat((prefix, inner), dim=1)
        ids = torch.cat((torch.full_like(x0_block, mask_id), x0_block), dim=1)
        t = None
        if self.backbone.time_embed is not None:
            t = torch.cat((torch.ones(B, T, device=device), torch.zeros(B, T, device=device)), 1)
        return self.backbone.run(ids, positions, t, attn_mask=mask, cache=ar_cache)[0][:, :T]

    def denoise_block(
        self, x_t_block: Tensor, cache: KVCache | None = None, t: Tensor | None = None
    ) -> Tensor:
        """Logits of the noisy block following the cached clean prefix (the cache is unchanged)."""
        start = 0 if cache is None else cache.length
        self.backbone._check_length(start + x_t_block.shape[1])
        positions = torch.arange(start, start + x_t_block.shape[1], device=x_t_block.device)
        return self.backbone.run(x_t_block, positions, t, cache=cache)[0]


class CausalTransformer(nn.Module):
    """Autoregressive LM of the same architecture (the AR baseline and gen-PPL reference)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.time_conditioning != "none":
            raise ValueError("a causal LM takes no time conditioning; use time_conditioning='none'")
        self.config = config
        self.backbone = TransformerBackbone(config)

    def num_parameters(self) -> int:
        return self.backbone.num_parameters()

    def forward(self, ids: Tensor) -> Tensor:
        """Next-token logits ``[B, T, V]``: position i predicts token i + 1."""
        self.backbone._check_length(ids.shape[1])
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.backbone.run(ids, positions, is_causal=True)[0]

    def forward_cached(self, ids: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """Logits of new tokens `ids` after the cached prefix, and the extended cache."""
        start = 0 if cache is None else cache.length
        T = ids.shape[1]
        self.backbone._check_length(start + T)
        positions = torch.arange(start, start + T, device=ids.device)
        # new token i sees the whole prefix and new tokens <= i
        keys = torch.arange(start + T, device=ids.device)
        mask = keys[None, :] <= (start + torch.arange(T, device=ids.device))[:, None]
        return self.backbone.run(ids, positions, attn_mask=mask, cache=cache)

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        top_p: float = 1.0,
        banned: tuple[int, ...] = (),
    ) -> Tensor:
        """Sample continuations of ``prompt [B, T0]`` with the KV cache; Gumbel-max in float64
        (float32 Gumbel noise truncates the tail and lowers the effective temperature).
        ``top_p`` < 1: nucleus sampling (Holtzman et al., 2020) on the tempered logits.
        ``banned``: ids never sampled (e.g. the diffusion ``<mask>``, absent from text)."""
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p} must be in (0, 1]")
        self.backbone._check_length(prompt.shape[1] + max_new_tokens)
        logits, cache = self.forward_cached(prompt)
        bias = torch.zeros(logits.shape[-1], dtype=torch.float64, device=logits.device)
        bias[list(banned)] = float("-inf")
        out = [prompt]
        for step in range(max_new_tokens):
            last = logits[:, -1].to(torch.float64) + bias
            if temperature == 0:
                token = last.argmax(-1, keepdim=True)
            else:
                u = torch.rand(
                    last.shape, dtype=torch.float64, device=last.device, generator=generator
                )
                gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
                scores = top_p_filter(last / temperature, top_p)
                token = (scores + gumbel).argmax(-1, keepdim=True)
            out.append(token)
            if step + 1 < max_new_tokens:  # a Python int: no host sync
                logits, cache = self.forward_cached(token, cache)
        return torch.cat(out, dim=1)
