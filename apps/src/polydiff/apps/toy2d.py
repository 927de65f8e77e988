"""The core demo: a diffusion MLP trained on a 2-D toy distribution, sampled by many solvers.

Everything generative comes from polydiff.core (path, training loss, training scaffold, solvers,
sampling driver); this module only brings the toy data, a small network, and the evaluation
(sliced Wasserstein distance to held-out data, a scatter plot per solver and budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from polydiff.apps.registry import ConfigError, StageResult
from polydiff.core.io import nan_to_none
from polydiff.core.metrics import sliced_wasserstein
from polydiff.core.utils import expand_like

# ----------------------------------------------------------------------------- toy data


def eight_gaussians(n: int, generator: torch.Generator) -> Tensor:
    """Eight isotropic Gaussians (std 0.15) with means on the circle of radius 2."""
    k = torch.randint(0, 8, (n,), generator=generator)
    angle = k.to(torch.float32) * (math.pi / 4)
    centers = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centers + 0.15 * torch.randn(n, 2, generator=generator)


def moons(n: int, generator: torch.Generator) -> Tensor:
    """Two interleaving half circles with Gaussian jitter (std 0.05), centred and scaled by 1.5."""
    upper = torch.rand(n, generator=generator) < 0.5
    s = math.pi * torch.rand(n, generator=generator)
    x = torch.where(upper, s.cos(), 1.0 - s.cos())
    y = torch.where(upper, s.sin(), 0.5 - s.sin())
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) + 0.05 * torch.randn(n, 2, generator=generator)
    return 1.5 * pts


def checkerboard(n: int, generator: torch.Generator) -> Tensor:
    """Uniform on the 8 "black" unit squares of a 4x4 board covering [-2, 2]^2."""
    col = torch.randint(0, 4, (n,), generator=generator)
    row = 2 * torch.randint(0, 2, (n,), generator=generator) + col % 2  # row + col even
    corner = torch.stack([col, row], dim=1).to(torch.float32) - 2.0
    return corner + torch.rand(n, 2, generator=generator)


DATASETS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "moons": moons,
    "checkerboard": checkerboard,
}


def make_data(name: str, n: int, seed: int) -> Tensor:
    """n points [n, 2] (float32) of the named toy distribution, reproducible from `seed`."""
    if name not in DATASETS:
        raise ValueError(f"data.name: unknown toy distribution {name!r}; known: {list(DATASETS)}")
    return DATASETS[name](n, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- network


class ToyMLP(nn.Module):
    """MLP denoiser f(x_t, t) for 2-D data; t enters through sinusoidal features.

    The features are those of Vaswani et al. (2017) / Ho et al. (2020) on 1000 t, so the network
    resolves both the coarse and the fine end of t in [0, 1].
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, t_features: int = 32):
        super().__init__()
        half = t_features // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        layers: list[nn.Module] = [nn.Linear(dim + 2 * half, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        layers.append(nn.Linear(hidden, dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = expand_like(t, x).expand(x.shape[0], 1)  # 0-dim (shared) or [B] -> [B, 1]
        angle = 1000.0 * t * self.freqs.to(x.dtype)
        return self.mlp(torch.cat([x, angle.sin(), angle.cos()], dim=1))


# ----------------------------------------------------------------------------- plot


def diverged(swd: float, swd_prior: float) -> bool:
    """A sample set farther from the data than the prior noise itself (or not finite) failed."""
    return not swd <= swd_prior


def plot_samples(
    path: Path,
    data: Tensor,
    samples: dict[tuple[str, int], Tensor],
    swd: dict[tuple[str, int], float],
    title: str,
    spent: dict[tuple[str, int], int] | None = None,
    swd_prior: float = float("inf"),
) -> None:
    """Grid of scatter plots (rows: solvers, columns: NFE budgets): samples over the data; the
    titles give the NFE actually spent and the SWD, and say "diverged" (in red, with how many
    points fell outside the view) when a set is farther from the data than the prior noise.

    With no samples, one panel of the data alone.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polydiff.core.io import atomic_path

    solvers = list(dict.fromkeys(s for s, _ in samples)) or ["data"]
    budgets = sorted({k for _, k in samples}) or [0]
    lim = float(data.abs().max()) * 1.25
    fig, axes = plt.subplots(
        len(solvers), len(budgets), figsize=(2.3 * len(budgets), 2.3 * len(solvers)), squeeze=False
    )
    d = data.cpu().numpy()
    for r, solver in enumerate(solvers):
        for c, nfe in enumerate(budgets):
            ax = axes[r][c]
            ax.scatter(d[:, 0], d[:, 1], s=1, c="0.75" if samples else "k", rasterized=True)
            if (solver, nfe) in samples:
                x = samples[solver, nfe].cpu().numpy()
                ax.scatter(x[:, 0], x[:, 1], s=1, c="tab:blue", rasterized=True)
                used = (spent or {}).get((solver, nfe), nfe)
                score = f"SWD {swd[solver, nfe]:.3g}"
                if diverged(swd[solver, nfe], swd_prior):
                    outside = int((~(abs(x) <= lim).all(axis=1)).sum())
                    score += f", diverged ({outside} of {len(x)} points off view)"
                ax.set_title(
                    f"{solver}, NFE {used}\n{score}",
                    fontsize=7,
                    color="red" if diverged(swd[solver, nfe], swd_prior) else "black",
                )
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------- the stage

PATHS = {"vp": "VPLinear", "vp_cosine": "VPCosine", "flow": "Flow"}
PREDICTIONS = ("eps", "x0", "v", "velocity")


def _check(cfg: DictConfig) -> None:
    """Reject bad options before any work, naming the option (ConfigError: exit code 2)."""
    if cfg.data.name not in DATASETS:
        raise ConfigError(
            f"data.name: unknown toy distribution {cfg.data.name!r}; known: {list(DATASETS)}"
        )
    if cfg.path not in PATHS:
        raise ConfigError(f"path: unknown path {cfg.path!r}; known: {list(PATHS)}")
    if cfg.prediction not in PREDICTIONS:
        raise ConfigError(f"prediction: {cfg.prediction!r} is not one of {PREDICTIONS}")
    from polydiff.core import paths
    from polydiff.core.solvers import check_solver

    for solver in cfg.sample.solvers:  # InputError: unknown, or for another kind of path
        check_solver(solver, getattr(paths, PATHS[cfg.path])(), option="sample.solvers")
    for key in (
        "data.n_train",
        "data.n_eval",
        "train.steps",
        "train.batch_size",
        "swd.projections",
    ):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or value < 2:
            raise ConfigError(f"{key} must be an integer >= 2, got {value!r}")
    for key in ("net.hidden", "net.depth"):  # a width of 0 trained a constant silently
        value = OmegaConf.select(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
    if not cfg.sample.nfe or not all(isinstance(k, int) and k >= 1 for k in cfg.sample.nfe):
        raise ConfigError(f"sample.nfe must be a list of integers >= 1, got {cfg.sample.nfe}")


def train_toy(cfg: DictConfig, data: Tensor, run_dir: Path):
    """Fit ToyMLP with the core's diffusion loss through polydiff.core.train.fit."""
    from torch.utils.data import TensorDataset

    from polydiff.core import losses, paths
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    path = getattr(paths, PATHS[cfg.path])()
    with torch.random.fork_rng(devices=[]):  # the initial weights follow `seed` alone
        torch.manual_seed(cfg.seed)
        net = ToyMLP(hidden=cfg.net.hidden, depth=cfg.net.depth)

    def loss_fn(net: nn.Module, batch: list[Tensor]) -> Tensor:
        return losses.diffusion_loss(net, batch[0], path, prediction=cfg.prediction).mean()

    module = DiffusionModule(
        net,
        loss_fn,
        lr=cfg.train.lr,
        warmup_steps=cfg.train.warmup,
        ema_decay=cfg.train.ema,
        ema_warmup=True,  # min(decay, (1+n)/(10+n)): short runs must not sample the init weights
    )
    loader = ResumableLoader(TensorDataset(data), batch_size=cfg.train.batch_size, seed=cfg.seed)
    trainer = fit(
        module,
        loader,
        run_dir / "train",
        max_steps=cfg.train.steps,
        checkpoint_every=cfg.train.checkpoint_every,
        seed=cfg.seed,
        log_every=min(50, cfg.train.steps),
        **OmegaConf.to_container(cfg.trainer),
    )
    return module, path, trainer


@torch.inference_mode()
def sample_all(cfg: DictConfig, net: nn.Module, path, n: int, device: torch.device):
    """Samples {(solver, nfe): [n, 2]} and the NFE actually spent (floor to whole steps)."""
    from polydiff.core import get_solver, sample

    net.eval()
    out: dict[tuple[str, int], Tensor] = {}
    spent: dict[tuple[str, int], int] = {}
    for name in cfg.sample.solvers:
        per_step = get_solver(name).nfe_per_step
        for nfe in cfg.sample.nfe:
            steps = max(1, nfe // per_step)
            g = torch.Generator(device=device).manual_seed(cfg.seed + 1)
            x_init = path.prior_sample((n, 2), generator=g, device=device)
            out[name, nfe] = sample(
                net,
                x_init,
                path=path,
                solver=name,
                steps=steps,
                prediction=cfg.prediction,
                grid=cfg.sample.grid,
                generator=g,
            ).float()
            spent[name, nfe] = steps * per_step
    return out, spent


def _markdown(
    cfg: DictConfig,
    swd: dict,
    floor: tuple[float, float],
    swd_prior: float,
    spent: dict,
    train_info: dict,
) -> str:
    budgets = list(cfg.sample.nfe)
    best = {k: min(cfg.sample.solvers, key=lambda s: swd[s, k]) for k in budgets}
    lines = [
        f"A {cfg.net.depth}x{cfg.net.hidden} MLP predicting `{cfg.prediction}` on the "
        f"`{cfg.path}` path, trained {train_info['steps']} steps on `{cfg.data.name}` "
        f"(final EMA-free loss {train_info['final_loss']:.4f}, {train_info['seconds']:.0f} s), "
        "then sampled from the same prior noise by each solver. Sliced Wasserstein-2 distance "
        f"(SWD, {cfg.swd.projections} directions) to {cfg.data.n_eval} held-out data points; "
        "the floor is the SWD of independent data draws of the same size (mean ± std of 5): "
        f"**{floor[0]:.4f} ± {floor[1]:.4f}**; the prior noise itself scores {swd_prior:.4f}. "
        "Differences below about the floor's std are noise.",
        "",
        "| solver | " + " | ".join(f"NFE {k}" for k in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    failed = []
    for s in cfg.sample.solvers:
        cells = []
        for k in budgets:
            cell = f"{swd[s, k]:.4f}" + ("" if spent[s, k] == k else f" ({spent[s, k]})")
            if diverged(swd[s, k], swd_prior):
                cell += " diverged"
                failed.append(f"{s} at NFE {spent[s, k]} (SWD {swd[s, k]:.4g})")
            cells.append(f"**{cell}**" if best[k] == s else cell)
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: best per budget; (n): NFE actually spent when the budget is not a "
        "whole number of steps; diverged: farther from the data than the prior noise.",
    ]
    if failed:
        lines += ["", f"**Diverged** (worse than the prior noise): {', '.join(failed)}."]
    return "\n".join(lines)


def evaluate(
    cfg: DictConfig, samples: dict[tuple[str, int], Tensor], path, device: torch.device
) -> tuple[dict[tuple[str, int], float], dict[str, float], Tensor]:
    """SWD of every sample set to held-out data, plus the references: the floor (fresh data
    draws: what a perfect sampler scores at this n, noisy, hence a mean of 5) and the prior noise.
    """
    n = cfg.data.n_eval
    held_out = make_data(cfg.data.name, n, cfg.seed + 1000).to(device)

    def swd_to_data(x: Tensor) -> float:
        g = torch.Generator().manual_seed(cfg.seed)  # the same directions for every comparison
        return float(sliced_wasserstein(x.to(device), held_out, cfg.swd.projections, generator=g))

    draws = torch.tensor(
        [swd_to_data(make_data(cfg.data.name, n, cfg.seed + 2000 + i)) for i in range(5)]
    )
    prior = path.prior_sample((n, 2), generator=torch.Generator().manual_seed(cfg.seed + 1))
    refs = {
        "swd_floor": draws.mean().item(),
        "swd_floor_std": draws.std().item(),
        "swd_prior": swd_to_data(prior),
    }
    return {key: swd_to_data(x) for key, x in samples.items()}, refs, held_out


def run_toy(cfg: DictConfig, run_dir: Path) -> StageResult | None:
    """The `polydiff core toy` verb and core demo stage (see commands/core.py)."""
    import time

    from polydiff.core.io import atomic_save_safetensors, atomic_write_json
    from polydiff.core.train import export

    _check(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    module, path, trainer = train_toy(
        cfg, make_data(cfg.data.name, cfg.data.n_train, cfg.seed), run_dir
    )
    if not trainer.is_global_zero:  # under DDP, only rank 0 evaluates and writes
        return None
    loss = trainer.callback_metrics.get("train/loss")
    train_info = {
        "steps": int(trainer.global_step),
        "final_loss": float(loss) if loss is not None else float("nan"),
        "seconds": round(time.perf_counter() - start, 1),
    }
    net_config = {"dim": 2, "hidden": cfg.net.hidden, "depth": cfg.net.depth}
    export(
        module, run_dir / "model", {**net_config, "path": cfg.path, "prediction": cfg.prediction}
    )

    net = module.eval_net
    device = next(net.parameters()).device
    samples, spent = sample_all(cfg, net, path, cfg.data.n_eval, device)
    swd, refs, held_out = evaluate(cfg, samples, path, device)
    solvers, budgets = list(cfg.sample.solvers), list(cfg.sample.nfe)
    metrics = nan_to_none(  # JSON has no NaN: a diverged sampler's SWD is null
        {
            "data": cfg.data.name,
            "path": cfg.path,
            "prediction": cfg.prediction,
            "train": train_info,
            **refs,
            "swd": {s: {str(k): swd[s, k] for k in budgets} for s in solvers},
            "nfe_spent": {s: {str(k): spent[s, k] for k in budgets} for s in solvers},
        }
    )
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_save_safetensors(
        run_dir / "samples.safetensors", {f"{s}/nfe{k}": x for (s, k), x in samples.items()}
    )
    plot = run_dir / "samples.png"
    plot_samples(plot, held_out, samples, swd, f"{cfg.data.name}: samples (blue) vs data (grey)",
                 spent, refs["swd_prior"])  # fmt: skip

    headline: dict[str, float | int | str] = {"SWD floor": refs["swd_floor"]}
    for k in budgets:
        best = min(solvers, key=lambda s: swd[s, k])
        headline[f"best SWD @NFE {k}"] = f"{best} {swd[best, k]:.4f}"
    n_diverged = sum(diverged(v, refs["swd_prior"]) for v in swd.values())
    if n_diverged:
        headline["diverged"] = f"{n_diverged} of {len(swd)} solver x NFE cells"
    floor = (refs["swd_floor"], refs["swd_floor_std"])
    return StageResult(
        headline=headline,
        markdown=_markdown(cfg, swd, floor, refs["swd_prior"], spent, train_info),
        plots=[("Samples per solver (rows) and NFE (columns) over held-out data", plot)],
        metrics=metrics,
    )
