"""CrysBFN: a periodic Bayesian flow for crystals.

Wu et al. (2025), "A Periodic Bayesian Flow for Material Generation" (CrysBFN): fractional
coordinates as angles x = 2 pi f - pi under the circular (von Mises) flow with the linear-entropy
accuracy schedule, the lattice vec(L)/std under the Gaussian flow (Graves et al. 2023, "Bayesian
Flow Networks", Sec. 4) and atom types under the discrete flow (Sec. 6), one CSPNet for all three
conditioned on the coordinate entropies. Training draws one step i = 1..N per crystal; the
coordinate input after i - 1 updates comes from a precomputed bank rotated by the data (exact in
distribution). Sampling is CrysBFN's "end back" loop of N network calls: predict, then redraw the
flows from the prediction at the next step.

Tasks: ``"csp"`` (crystal structure prediction: compositions given, types are inputs) and
``"gen"`` (ab-initio generation: types generated, atom counts drawn from the training data).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import one_hot

from polydiff.core.bfn import CircularBFN, ContinuousBFN, DiscreteBFN
from polydiff.core.discrete.sampling import sample_categorical
from polydiff.core.errors import InputError, check_number
from polydiff.core.method import Config, Method, register_method
from polydiff.core.torus import wrap
from polydiff.crystal.data import (
    Crystals,
    ElementVocab,
    fully_connected_edges,
    min_distance,
    parse_compositions,
)
from polydiff.crystal.nets import CSPNet

__all__ = [
    "CrysBFN",
    "CrysBFNConfig",
    "CrystalConfig",
    "config_for",
    "most_spread",
    "sample_in_chunks",
]

TASKS = ("csp", "gen")
COORD_WEIGHTS = ("elbo", "flat")
SAMPLERS = ("end_back", "bayes")


def check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {value!r}")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def check_positive_ints(config, names: tuple[str, ...]) -> None:
    for name in names:
        check_positive_int(name, getattr(config, name))


@dataclass(frozen=True)
class CrystalConfig(Config):
    """What every crystal method shares: ``elements`` (the type vocabulary, atomic numbers),
    ``lattice_std`` (the scale of vec(L); MP-20: 3.866), ``max_atoms`` and the CSPNet size."""

    elements: tuple[int, ...] = ElementVocab().numbers
    lattice_std: float = 3.866
    max_atoms: int = 64
    hidden: int = 128
    layers: int = 4
    n_freq: int = 32
    time_dim: int = 64

    def __post_init__(self) -> None:
        check_positive_ints(self, ("hidden", "layers", "n_freq", "time_dim", "max_atoms"))
        check_number("lattice_std", self.lattice_std, positive=True)

    def build_net(self, cond_dim: int) -> CSPNet:
        return CSPNet(
            len(self.elements), self.hidden, self.layers, self.n_freq, cond_dim, self.time_dim
        )


@dataclass(frozen=True)
class CrysBFNConfig(CrystalConfig):
    """CrysBFN settings (defaults: the paper's flows; a small CPU-sized CSPNet). ``steps``: N,
    shared by training and sampling; ``atom_counts``: how many training crystals have n atoms
    (index n), for ``gen``; ``loss_weights``: coordinates, lattice, types.

    ``coord_weights``: ``"elbo"`` (CrysBFN's N-step weights N alpha_i I1/I0(alpha_i), which grow
    ~600-fold from i = 1 to N at N = 10) or ``"flat"`` (their mean at every step, so the early
    steps that decide the arrangement are trained as much as the late refining ones).
    ``shift_invariant``: score the coordinates up to a global translation of each crystal (the
    per-crystal circular mean of the error is removed): a crystal has no absolute origin, so
    the error of the origin is noise the network cannot reduce.

    ``sampler``: the default sampling loop (:meth:`CrysBFN.predict` may override it):
    ``"end_back"`` (CrysBFN's released sampler: after each prediction the flows are redrawn
    from it at the next step) or ``"bayes"`` (BFN's sampler: one sender sample from each
    prediction updates the parameters, which keep the earlier samples)."""

    task: str = "csp"
    steps: int = 10
    coord_beta_1: float = 1e3
    lattice_sigma_1: float = math.sqrt(1e-3)
    type_beta_1: float = 0.5
    atom_counts: tuple[int, ...] = ()
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    bank_size: int = 1 << 16
    coord_weights: str = "elbo"
    shift_invariant: bool = True
    sampler: str = "end_back"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("sampler", self.sampler, SAMPLERS)
        check_choice("task", self.task, TASKS)
        check_choice("coord_weights", self.coord_weights, COORD_WEIGHTS)
        check_positive_ints(self, ("steps", "bank_size"))
        for name in ("coord_beta_1", "type_beta_1"):
            check_number(name, getattr(self, name), positive=True)
        if not 0 < self.lattice_sigma_1 < 1:
            raise InputError(f"lattice_sigma_1 must be in (0, 1), got {self.lattice_sigma_1}")


def config_for(crystals: Crystals, config_class: type = CrysBFNConfig, **options) -> Any:
    """A ``config_class`` (CrysBFN's or DiffCSP's) fitted to a training set: its elements,
    lattice scale, maximum and (where a field) atom counts; ``options`` override any field."""
    counts = torch.bincount(crystals.num_atoms).tolist()
    fitted = dict(
        elements=ElementVocab.covering(crystals).numbers,
        lattice_std=float(crystals.lattice.double().std()),
        max_atoms=int(crystals.num_atoms.max()),
        atom_counts=tuple(int(c) for c in counts),
    )
    names = {f.name for f in fields(config_class)}
    return config_class(**{**{k: v for k, v in fitted.items() if k in names}, **options})


def sample_in_chunks(sample, types, counts: Tensor, generator, batch_size: int) -> Crystals:
    """``sample(types, counts, generator)`` on at most ``batch_size`` crystals at a time (the
    fully connected graphs grow with the square of the atom counts); ``types`` may be None."""
    check_number("batch_size", batch_size, positive=True)
    ends = torch.cumsum(counts, 0)
    parts = []
    for start in range(0, len(counts), int(batch_size)):
        stop = min(start + int(batch_size), len(counts))
        a, b = int(ends[start] - counts[start]), int(ends[stop - 1])
        parts.append(sample(None if types is None else types[a:b], counts[start:stop], generator))
    return Crystals.cat(parts)


def most_spread(runs: Sequence[Crystals]) -> Crystals:
    """Per crystal, the candidate (one per run, the runs aligned) whose two closest atoms are
    farthest apart."""
    spread = np.array([[min_distance(s) for s in run.structures()] for run in runs])
    best = spread.argmax(0)
    return Crystals.cat([runs[int(b)][j] for j, b in enumerate(best)])


@register_method
class CrysBFN(Method):
    """CrysBFN on the core Method base: ``loss_fn(net, batch)`` takes a torch-geometric batch of
    :func:`polydiff.crystal.data.to_graphs`; :meth:`predict` (CSP) and :meth:`generate` sample
    crystals in ``config.steps`` network calls."""

    domain, name, config_class = "crystal", "crysbfn", CrysBFNConfig

    def __init__(self, config: CrysBFNConfig, net: nn.Module | None = None) -> None:
        super().__init__(config, net)
        c = config
        self.vocab = ElementVocab(c.elements)
        self.coord_flow = CircularBFN(c.steps, c.coord_beta_1)
        self.lattice_flow = ContinuousBFN(c.lattice_sigma_1)
        if c.task == "gen" and len(self.vocab) < 2:
            raise InputError(
                f"elements: task 'gen' needs at least 2 elements to choose from, got {c.elements}"
            )
        # CSP is given the types: a one-element vocabulary (carbon-24) needs no type flow
        self.type_flow = (
            DiscreteBFN(len(self.vocab), c.type_beta_1) if len(self.vocab) > 1 else None
        )
        self._bank: tuple[Tensor, Tensor] | None = None

    def build_net(self) -> nn.Module:
        return self.config.build_net(cond_dim=3)  # the three coordinate entropies

    # --- one network call on the flows' parameters ---------------------------------------------

    def _predict(self, net, type_in, m, c, mu, t, batch, edge_index):
        """(x_hat angles, l_hat [B, 9], type logits) from the receiver's parameters at time t
        [B]: x_hat = m + update (CrysBFN), l_hat from the predicted noise (BFN Sec. 4)."""
        frac = (m + math.pi) / (2 * math.pi)
        lattice = mu.reshape(-1, 3, 3)
        cond = self.coord_flow.entropy_condition(c)
        out = net(type_in, frac, lattice, cond, t, batch, edge_index)
        x_hat = m + out.coords.double()
        l_hat = self.lattice_flow.output_from_eps(mu, out.lattice.reshape(-1, 9).double(), t)
        return x_hat, l_hat, out.types.double()

    def _type_input(self, types: Tensor, t: Tensor | None, generator=None) -> Tensor:
        """2 theta - 1: one-hot for CSP, the discrete flow at t for generation."""
        if self.config.task == "csp" or t is None:
            return 2.0 * one_hot(types, len(self.vocab)).float() - 1
        theta = self.type_flow.flow_sample(types, t, generator).exp()
        return (2 * theta - 1).float()

    # --- training ------------------------------------------------------------------------------

    def bank(self) -> tuple[Tensor, Tensor]:
        """The coordinate flow's bank, drawn once (a fixed seed: a table of draws, not state of
        the training RNG; training randomness picks its entries)."""
        if self._bank is None:
            seeded = torch.Generator().manual_seed(0)
            self._bank = self.coord_flow.flow_bank(self.config.bank_size, seeded)
        return self._bank

    def loss_fn(self, net: nn.Module, batch) -> dict[str, Tensor]:
        """CrysBFN's N-step loss at one random step i per crystal: coordinates
        N alpha_i I1/I0(alpha_i) |x_hat - x|^2 (shortest angle), lattice
        N (1 - s^(2/N)) / (2 s^(2i/N)) ||l_hat - l||^2, types K beta_1 t ||e - e_hat||^2
        (generation only); each averaged over atoms or crystals."""
        n, c = self.config.steps, self.config
        B = int(batch.num_atoms.shape[0])
        device = batch.frac.device
        i = torch.randint(1, n + 1, (B,), device=device)
        t = (i - 1).double() / n
        x = 2 * math.pi * batch.frac.double() - math.pi
        atom_i = i[batch.batch]
        m, conc = self.coord_flow.flow_from_bank(x, (atom_i - 1)[:, None], self.bank())
        lat = batch.lattice.reshape(B, 9).double() / c.lattice_std
        mu = self.lattice_flow.flow_sample(lat, t)
        type_in = self._type_input(batch.types, t[batch.batch])
        x_hat, l_hat, logits = self._predict(
            net, type_in, m, conc, mu, t, batch.batch, batch.edge_index
        )
        coord = self._coord_loss(x_hat, x, atom_i, batch.batch, B)
        lattice_w = self.lattice_flow.discrete_loss_weight(i, n).to(device)
        lattice = (lattice_w * (l_hat - lat).pow(2).sum(-1)).mean()
        parts = {"coord": coord, "lattice": lattice}
        if c.task == "gen":
            probs = torch.softmax(logits, -1)
            parts["type"] = self.type_flow.loss(probs, batch.types, t[batch.batch]).mean()
        weights = dict(zip(("coord", "lattice", "type"), c.loss_weights))
        loss = sum(weights[k] * v for k, v in parts.items())
        return {"loss": loss.float(), **{k: v.detach().float() for k, v in parts.items()}}

    def _coord_loss(self, x_hat: Tensor, x: Tensor, atom_i: Tensor, crystal: Tensor, B: int):
        """Mean over atoms of weight(i) |x_hat - x|^2 (shortest angles), the error taken up to
        a global shift per crystal and axis where ``shift_invariant``."""
        c = self.config
        d = wrap(x_hat - x, -math.pi, 2 * math.pi)
        if c.shift_invariant:
            sums = d.new_zeros(B, 2, 3).index_add_(0, crystal, torch.stack([d.sin(), d.cos()], 1))
            d = wrap(d - torch.atan2(sums[:, 0], sums[:, 1])[crystal], -math.pi, 2 * math.pi)
        weight = self.coord_flow.loss_weight(atom_i)
        if c.coord_weights == "flat":
            steps = torch.arange(1, c.steps + 1, device=x.device)
            weight = self.coord_flow.loss_weight(steps).mean().expand_as(weight)
        return (weight * d.pow(2).sum(-1)).mean()

    # --- sampling ------------------------------------------------------------------------------

    def sampling_flow(self, steps: int | None) -> CircularBFN:
        """The coordinate flow of an ``steps``-step sampler (None: the training N). Its entropy
        is linear in t = i / steps for every N, so a model trained at N sees the same
        (time, entropy) pairs, at other grid points, when sampled with another N."""
        if steps is None or steps == self.config.steps:
            return self.coord_flow
        check_positive_int("steps", steps)
        return CircularBFN(steps, self.config.coord_beta_1)

    def _sampler(self, steps: int | None, sampler: str | None):
        """_sample with the flow of ``steps`` and the ``sampler`` loop (None: the config's)."""
        sampler = self.config.sampler if sampler is None else sampler
        check_choice("sampler", sampler, SAMPLERS)
        return functools.partial(self._sample, flow=self.sampling_flow(steps), sampler=sampler)

    @torch.no_grad()
    def _sample(
        self,
        types: Tensor | None,
        counts: Tensor,
        generator,
        flow: CircularBFN | None = None,
        sampler: str = "end_back",
    ) -> Crystals:
        """N network calls (N: ``flow``'s steps, by default the training N) of the ``sampler``
        loop; ``types`` None generates them."""
        flow = flow or self.coord_flow
        n, device = flow.n_steps, self.device
        B, N = len(counts), int(counts.sum())
        counts = counts.to(device)
        batch = torch.repeat_interleave(torch.arange(B, device=device), counts)
        edges = fully_connected_edges(counts)
        K = len(self.vocab)
        u = torch.rand((N, 3), generator=generator, dtype=torch.float64).to(device)
        m, conc = (2 * u - 1) * math.pi, torch.zeros(N, 3, dtype=torch.float64, device=device)
        mu = torch.zeros(B, 9, dtype=torch.float64, device=device)
        rho = torch.ones(B, 1, dtype=torch.float64, device=device)  # the lattice prior N(0, 1)
        log_theta = torch.full((N, K), -math.log(K), dtype=torch.float64, device=device)
        given = types is not None
        type_in = self._type_input(types.to(device), None) if given else 2 * log_theta.exp() - 1
        self.net.eval()
        for i in range(n):
            t = torch.full((B,), i / n, dtype=torch.float64, device=device)
            x_hat, l_hat, logits = self._predict(
                self.net, type_in.to(device).float(), m, conc, mu, t, batch, edges
            )
            if i == n - 1:
                break
            k = None if given else sample_categorical(logits, generator)
            if sampler == "bayes":
                m, conc, mu, rho, log_theta = self._bayes_update(
                    flow, i, n, (m, conc, mu, rho, log_theta), (x_hat, l_hat, k), generator
                )
            else:
                m, conc = flow.flow_sample(x_hat, i + 1, generator)
                mu = self.lattice_flow.flow_sample(l_hat, (i + 1) / n, generator)
                if not given:
                    log_theta = self.type_flow.flow_sample(k, (i + 1) / n, generator)
            if not given:
                type_in = 2 * log_theta.exp() - 1
        out_types = types.to(device) if given else sample_categorical(logits, generator)
        frac = (wrap(x_hat, -math.pi, 2 * math.pi) + math.pi) / (2 * math.pi)
        lattice = (l_hat * self.config.lattice_std).reshape(B, 3, 3)
        crystals = Crystals(
            frac.float().cpu() % 1.0,
            lattice.float().cpu(),
            self.vocab.decode(out_types).cpu(),
            counts.cpu(),
            tuple(f"sample {j}" for j in range(B)),
        )
        return replace(crystals, names=tuple(crystals.formulas()))

    def _bayes_update(self, flow: CircularBFN, i: int, n: int, params, predictions, generator):
        """Step i + 1 of BFN's sampler (Graves et al. 2023, Alg. 3; CrysBFN's non-"end back"
        sampler): a sender sample from each prediction at that step's accuracy updates the
        receiver's parameters, which keep what earlier steps drew."""
        m, conc, mu, rho, log_theta = params
        x_hat, l_hat, k = predictions
        a = flow.alphas[i].to(x_hat)
        m, conc = flow.update(m, conc, flow.sender_sample(x_hat, a, generator), a)
        s1 = self.lattice_flow.sigma_1
        a = s1 ** (-2 * (i + 1) / n) - s1 ** (-2 * i / n)  # precision gained from t_i to t_i+1
        y = self.lattice_flow.sender_sample(l_hat, torch.tensor(a, dtype=l_hat.dtype), generator)
        mu, rho = self.lattice_flow.update(mu, rho, y, a)
        if k is not None:
            a = self.type_flow.beta_1 * (2 * i + 1) / n**2  # beta((i+1)/n) - beta(i/n)
            a = torch.tensor(a, dtype=torch.float64, device=x_hat.device)
            log_theta = self.type_flow.update(
                log_theta, self.type_flow.sender_sample(k, a, generator)
            )
        return m, conc, mu, rho, log_theta

    def predict(
        self,
        compositions: Sequence[str] | Crystals,
        *,
        generator=None,
        batch_size: int = 256,
        steps: int | None = None,
        sampler: str | None = None,
        candidates: int = 1,
    ) -> Crystals:
        """Crystal structure prediction: one structure per composition (formula strings such as
        "SrTiO3", pymatgen Compositions, or the compositions of a Crystals set) in ``steps``
        (default ``config.steps``) network calls per batch of ``batch_size`` crystals, with the
        ``sampler`` loop (default ``config.sampler``). ``candidates`` > 1 draws that many
        structures per composition (``candidates`` x ``steps`` calls) and keeps the one whose
        closest two atoms are farthest apart (a filter against overlapping atoms)."""
        if self.config.task != "csp":
            raise InputError(
                f"predict needs a model trained for task 'csp', not {self.config.task!r}"
            )
        numbers, counts = parse_compositions(compositions, self.vocab, self.config.max_atoms)
        types = self.vocab.encode(numbers)
        check_positive_int("candidates", candidates)
        sample = self._sampler(steps, sampler)
        runs = [
            sample_in_chunks(sample, types, counts, generator, batch_size)
            for _ in range(candidates)
        ]
        return runs[0] if candidates == 1 else most_spread(runs)

    def generate(
        self,
        n: int,
        *,
        generator=None,
        batch_size: int = 256,
        steps: int | None = None,
        sampler: str | None = None,
    ) -> Crystals:
        """Ab-initio generation of ``n`` crystals, atom counts drawn from ``config.atom_counts``,
        in ``steps`` (default ``config.steps``) network calls per batch with the ``sampler``
        loop (default ``config.sampler``)."""
        if self.config.task != "gen":
            raise InputError(
                f"generate needs a model trained for task 'gen', not {self.config.task!r}"
            )
        check_number("n", n, positive=True)
        if not any(self.config.atom_counts):
            raise InputError("generate: the config has no atom_counts (fit it with config_for)")
        weights = torch.tensor(self.config.atom_counts, dtype=torch.float64)
        counts = torch.multinomial(weights, int(n), replacement=True, generator=generator)
        sample = self._sampler(steps, sampler)
        return sample_in_chunks(sample, None, counts, generator, batch_size)

    def sample(self, compositions=None, *, n: int | None = None, **options) -> Crystals:
        """:meth:`predict` for the compositions given, else :meth:`generate` ``n`` crystals."""
        if compositions is not None:
            return self.predict(compositions, **options)
        return self.generate(n or 1, **options)
