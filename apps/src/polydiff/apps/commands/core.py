"""Sampler core: diffusion paths, solvers and the sampling driver on 2-D toy data."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Draw a built-in 2-D toy distribution: data.safetensors (key "x") and data.png."""
    from polydiff.apps.toy2d import make_data, plot_samples
    from polydiff.core.io import atomic_save_safetensors

    if isinstance(cfg.data.n, bool) or not isinstance(cfg.data.n, int) or cfg.data.n < 1:
        raise ConfigError(f"data.n must be an integer >= 1, got {cfg.data.n!r}")
    try:
        x = make_data(cfg.data.name, cfg.data.n, cfg.seed)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    atomic_save_safetensors(run_dir / "data.safetensors", {"x": x}, {"name": cfg.data.name})
    plot_samples(run_dir / "data.png", x, {}, {}, f"{cfg.data.name}, n = {cfg.data.n}")


@demo_stage(
    quick=(
        "train.steps=400",
        "train.lr=5e-3",
        "train.batch_size=256",
        "data.n_train=4096",
        "data.n_eval=1000",
        "sample.nfe=[4,8]",
        "swd.projections=128",
    )
)
@verb("toy")
def toy(cfg: DictConfig, run_dir: Path) -> StageResult | None:
    """Train a small diffusion MLP on a 2-D toy distribution; compare solvers by sliced W2.

    Trains through polydiff.core.train, samples with every solver in `sample.solvers` at every
    budget in `sample.nfe`, and writes metrics.json (SWD per solver and NFE, with the SWD of two
    independent data draws as the floor), samples.png and the EMA weights (model.safetensors).
    """
    from polydiff.apps.toy2d import run_toy

    return run_toy(cfg, run_dir)
