"""An enumerable discrete target over V^L with exact denoisers for the masked and uniform paths.

Ground truth for discrete samplers without training: with V^L <= 4096 sequences, p(x0 | z_t) is
a finite sum, so the Bayes-optimal logits of every position are exact.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from polydiff.core.discrete.paths import MaskedDiffusion, UniformDiffusion, per_position

__all__ = ["EnumerableTarget"]

MAX_STATES = 4096


class EnumerableTarget:
    """A joint distribution p over sequences in {0..V-1}^L given by V^L probabilities (row-major,
    position 0 most significant). ``probs`` may be any nonnegative weights; they are normalized."""

    def __init__(self, probs: Tensor, vocab_size: int, seq_len: int) -> None:
        n = vocab_size**seq_len
        if n > MAX_STATES:
            raise ValueError(f"vocab_size**seq_len = {n} exceeds {MAX_STATES} enumerable states")
        probs = torch.as_tensor(probs, dtype=torch.float64).reshape(-1)
        if probs.numel() != n or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError(f"probs must hold {n} nonnegative weights with positive sum")
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.probs = probs / probs.sum()
        grid = itertools.product(range(vocab_size), repeat=seq_len)
        self.configs = torch.tensor(list(grid), dtype=torch.long)  # [N, L]
        self._onehot = torch.nn.functional.one_hot(self.configs, vocab_size).double()  # [N, L, V]

    @classmethod
    def random(
        cls, vocab_size: int, seq_len: int, *, scale: float = 2.0, seed: int = 0
    ) -> EnumerableTarget:
        """p proportional to exp(scale * N(0, 1)) per sequence: strongly correlated positions."""
        g = torch.Generator().manual_seed(seed)
        logits = scale * torch.randn(vocab_size**seq_len, generator=g, dtype=torch.float64)
        return cls(torch.softmax(logits, 0), vocab_size, seq_len)

    def flat_index(self, x: Tensor) -> Tensor:
        """Row-major index of each sequence x [B, L] into ``probs``."""
        if x.shape[-1] != self.seq_len or (x < 0).any() or (x >= self.vocab_size).any():
            raise ValueError(
                f"sequences must be [B, {self.seq_len}] with tokens < {self.vocab_size}"
            )
        weights = self.vocab_size ** torch.arange(self.seq_len - 1, -1, -1, device=x.device)
        return (x.long() * weights).sum(-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.multinomial(self.probs, n, replacement=True, generator=generator)
        return self.configs[idx]

    def empirical(self, x: Tensor) -> Tensor:
        """Histogram of sequences x [B, L] over the V^L states (sums to 1)."""
        counts = torch.bincount(self.flat_index(x.cpu()), minlength=self.probs.numel())
        return counts.double() / x.shape[0]

    def tv(self, x: Tensor) -> float:
        """Total-variation distance between the empirical law of x and p."""
        return 0.5 * (self.empirical(x) - self.probs).abs().sum().item()

    def _marginals(self, log_w: Tensor) -> Tensor:
        """Per-position marginals sum_n w[b, n] 1{X_n^l = v} of normalized weights, [B, L, V]."""
        w = torch.softmax(log_w, -1)
        return torch.einsum("bn,nlv->blv", w, self._onehot.to(w.device))

    def _matches(self, weights: Tensor) -> Tensor:
        """sum_l weights[b, l, X_n^l] for every sequence X_n: a [B, L V] x [L V, N] product."""
        onehot = self._onehot.to(weights.device).reshape(self.probs.numel(), -1)
        return weights.reshape(weights.shape[0], -1) @ onehot.T

    def tilted_marginals(self, log_weights: Tensor) -> Tensor:
        """Per-position marginals [B, L, V] of p(x) prod_l exp(log_weights[b, l, x^l]): e.g. the
        exact output of a discrete Bayesian flow, p(x | theta) ∝ p(x) prod_l theta_l[x^l]."""
        log_w = torch.log(self.probs.to(log_weights.device)) + self._matches(log_weights.double())
        return self._marginals(log_w)

    def masked_posterior(self, z: Tensor, mask_index: int) -> Tensor:
        """p(x0^l = v | z) for the masked path [B, L, V]. It does not depend on t: the mask
        pattern alone carries the information."""
        visible = z != mask_index
        z_onehot = torch.nn.functional.one_hot(z.clamp(max=self.vocab_size - 1), self.vocab_size)
        hits = self._matches((z_onehot * visible.unsqueeze(-1)).double())  # [B, N]
        compatible = hits == visible.sum(-1, keepdim=True)
        log_w = torch.log(self.probs.to(z.device)) + torch.log(compatible.double())
        return self._marginals(log_w)

    def uniform_posterior(self, z: Tensor, alpha: Tensor, leave_one_out: bool = False) -> Tensor:
        """p(x0^l | z) for the uniform path with keep probability alpha ([B, L]), or the
        leave-one-out p(x0^l | z^{-l}) that the UDLM loss trains. [B, L, V].

        q(z^l | x^l) is a + (1 - a)/V on a match and (1 - a)/V otherwise, so up to a per-row
        constant log p(z | X_n) = sum_l gain_l 1{X_n^l = z^l} with gain = log1p(V a / (1 - a))."""
        V, L = self.vocab_size, self.seq_len
        gain = torch.log1p(V * alpha / (1 - alpha))  # [B, L]
        z_onehot = torch.nn.functional.one_hot(z, V).double()
        log_lik = self._matches(z_onehot * gain.unsqueeze(-1))  # [B, N]
        log_w = torch.log(self.probs.to(z.device)) + log_lik
        if not leave_one_out:
            return self._marginals(log_w)
        X = self.configs.to(z.device)
        out = torch.empty(z.shape[0], L, V, dtype=torch.float64, device=z.device)
        for l in range(L):  # drop position l's own likelihood factor
            own = (X[:, l].unsqueeze(0) == z[:, l : l + 1]).double() * gain[:, l : l + 1]
            out[:, l] = self._marginals(log_w - own)[:, l]
        return out

    def masked_denoiser(self, path: MaskedDiffusion):
        """model(z, t) -> exact x0 logits [B, L, K] for ``path`` (time-independent)."""
        if path.num_classes != self.vocab_size:
            raise ValueError("path.num_classes must equal the target's vocab_size")

        def model(z: Tensor, t: Tensor) -> Tensor:
            return torch.log(self.masked_posterior(z, path.mask_index))

        return model

    def uniform_denoiser(self, path: UniformDiffusion, leave_one_out: bool = True):
        """model(z, t) -> exact logits [B, L, V]: leave-one-out (default) or full posterior."""
        if path.num_classes != self.vocab_size:
            raise ValueError("path.num_classes must equal the target's vocab_size")

        def model(z: Tensor, t: Tensor) -> Tensor:
            alpha = path.alpha(per_position(t, z))
            return torch.log(self.uniform_posterior(z, alpha, leave_one_out))

        return model
