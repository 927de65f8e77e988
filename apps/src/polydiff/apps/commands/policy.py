"""Policies learned from offline data (diffusion, streaming, flow, BC) and judged by rollouts.

Plumbing only: each verb calls polydiff.motion.policy (docs/policy.md) and writes what it returns.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polydiff.apps.registry import ConfigError, StageResult, demo_stage, verb

log = logging.getLogger(__name__)


def _path(value: Any, option: str, *, exists: bool = True) -> Path:
    """An option's path relative to the directory `polydiff` was started in; an input must
    exist, an output must not lie under a regular file."""
    from hydra.utils import to_absolute_path

    path = Path(to_absolute_path(str(value)))
    if exists and not path.exists():
        raise ConfigError(f"{option}={value}: no such file or folder")
    if not exists:
        if path.is_dir():
            raise ConfigError(f"{option}={value}: is a folder, not a file name")
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(f"{option}={value}: {blocking} is a file, not a folder")
    return path


def _positive(cfg: DictConfig, *options: str, allow_null: bool = False) -> None:
    for option in options:
        value = OmegaConf.select(cfg, option)
        if value is None and allow_null:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{option} must be a positive integer, got {value!r}")


@verb("data")
def data(cfg: DictConfig, run_dir: Path) -> None:
    """Write a built-in PointMaze or PushT dataset, or a local Minari dataset, as a D4RL HDF5 file.

    Without input=: rollouts of the scripted PointMaze expert (maze umaze | medium | large,
    variant expert | noisy | random | multimodal), with maze=pusht of the scripted PushT
    pusher (variant expert | noisy | random), or with maze=fork the obstacle-fork expert
    passing on a random side (variant and noise unused), episode i reset with seed + i. With
    input=<Minari dataset folder>: that dataset converted. Writes output (default
    <run>/data.hdf5) and data.json (episodes, steps, success rate); `polydiff policy train
    data=<file>` reads it.
    """
    from polydiff.core.io import atomic_write_json
    from polydiff.motion.policy.data import read_d4rl, read_minari, write_d4rl
    from polydiff.motion.policy.experts import pointmaze_dataset
    from polydiff.motion.policy.fork import fork_dataset
    from polydiff.motion.policy.pusht import pusht_dataset

    _positive(cfg, "episodes")
    if cfg.noise is not None and cfg.noise < 0:
        raise ConfigError(f"noise must be >= 0, got {cfg.noise}")
    noise = {} if cfg.noise is None else {"noise": cfg.noise}  # null: each task's own default
    out = run_dir / "data.hdf5" if cfg.output is None else _path(cfg.output, "output", exists=False)
    if cfg.input is not None:
        dataset = read_minari(_path(cfg.input, "input"), env_id=cfg.env_id)
    elif cfg.maze == "fork":
        dataset = fork_dataset(cfg.episodes, cfg.seed)
    elif cfg.maze == "pusht":
        dataset = pusht_dataset(cfg.variant, cfg.episodes, cfg.seed, **noise)
    else:
        dataset = pointmaze_dataset(cfg.maze, cfg.variant, cfg.episodes, cfg.seed, **noise)
    write_d4rl(out, dataset)
    stats = read_d4rl(out).stats()  # read back: what was written is what train will see
    atomic_write_json(run_dir / "data.json", {"output": str(out), **stats})
    success = f", success {stats['success_rate']:.0%}" if "success_rate" in stats else ""
    log.info("%s: %d episodes, %d steps%s -> %s", stats["env_id"], stats["episodes"],
             stats["steps"], success, out)  # fmt: skip


@verb("train")
def train(cfg: DictConfig, run_dir: Path) -> None:
    """Train a policy (method=diffusion | streaming | flow | bc) on a D4RL HDF5 file.

    Fits limits normalizers to data=, trains on windows of H actions with the core's fit
    (AdamW + EMA, checkpoints every checkpoint_every steps in <run>/checkpoints; the same
    command in the same run folder resumes; polydiff.motion.policy.common.train_policy) and
    exports the EMA weights to <run>/model (config.json + model.safetensors, normalizers
    included), which `polydiff policy rollout model=<run>/model` rolls out. Writes train.json
    (final loss, seconds, parameters).
    """
    import torch

    from polydiff.core.io import atomic_write_json
    from polydiff.motion.policy.common import METHODS, make_policy, train_policy
    from polydiff.motion.policy.data import read_d4rl

    if cfg.data is None:
        raise ConfigError("data=<D4RL HDF5 file> is required (polydiff policy data writes one)")
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method}: unknown (one of {', '.join(METHODS)})")
    _positive(cfg, "steps", "batch_size", "checkpoint_every")
    _positive(cfg, "horizon", "n_obs_steps", "n_action_steps", allow_null=True)
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    dataset = read_d4rl(_path(cfg.data, "data"), env_id=cfg.env_id)
    options = OmegaConf.to_container(cfg.get(cfg.method) or {}, resolve=True)
    for key in ("horizon", "n_obs_steps", "n_action_steps"):
        if cfg[key] is not None:
            options[key] = cfg[key]
    torch.manual_seed(cfg.seed)
    policy = make_policy(cfg.method, dataset, **options)
    start = time.perf_counter()
    run = train_policy(policy, dataset, run_dir, steps=cfg.steps, batch_size=cfg.batch_size,
                       lr=cfg.lr, ema_decay=cfg.ema, seed=cfg.seed,
                       checkpoint_every=cfg.checkpoint_every)  # fmt: skip
    seconds = time.perf_counter() - start
    final = run["final_loss"]  # logged losses over the last 5% of the steps
    info = {"method": cfg.method, "env_id": dataset.env_id, "steps": run["steps"],
            "final_loss": final, "seconds": seconds,
            "parameters": sum(p.numel() for p in policy.net.parameters())}  # fmt: skip
    atomic_write_json(run_dir / "train.json", info)
    log.info("%s on %s: final loss %.4f after %d steps (%.0f s) -> %s", cfg.method,
             dataset.env_id, final, run["steps"], seconds, run["folder"])  # fmt: skip


def _rollouts(cfg: DictConfig):
    """The policy of `model=` rolled out for `episodes` seeds from `seed`: the result and
    its summary."""
    import torch

    from polydiff.motion.policy.evaluate import policy_for, rollout

    _positive(cfg, "episodes")
    _positive(cfg, "max_steps", "sample_steps", allow_null=True)
    spec = cfg.model
    if spec not in (None, "expert"):
        spec = _path(spec, "model")
    policy, env_id = policy_for(spec, cfg.env_id, "model")
    config = getattr(policy, "config", None)
    for option, field in (("solver", "solver"), ("sample_steps", "steps")):
        if cfg[option] is not None:
            if not hasattr(config, field):
                raise ConfigError(f"{option}: the policy {spec} has no {field} to set")
            setattr(config, field, cfg[option])
    torch.manual_seed(cfg.seed)
    result = rollout(policy, env_id, range(cfg.seed, cfg.seed + cfg.episodes), cfg.max_steps)
    name = "shipped umaze-diffusion" if spec is None else str(spec)
    summary = {"policy": name, **result.summary()}
    low, high = summary["success_ci95"]
    score = summary.get("normalized_score")
    log.info("%s: success %d/%d = %.2f [%.2f, %.2f], return %.2f%s, %.2f network calls and "
             "%.2f ms per action", env_id, sum(result.successes), len(result.successes),
             summary["success_rate"], low, high, summary["mean_return"],
             "" if score is None else f", normalized score {100 * score:.1f}",
             summary["network_calls_per_action"], summary["ms_per_action"])  # fmt: skip
    return result, summary


@verb("evaluate")
def evaluate(cfg: DictConfig, run_dir: Path) -> None:
    """Success rate (95% interval), return, D4RL score and cost per action of a policy.

    Rolls model= (a saved policy folder; null: the shipped UMaze diffusion policy; expert:
    the scripted PointMaze or PushT expert) out once per seed in env_id (default: the policy's own),
    all episodes in lockstep (polydiff.motion.policy.evaluate), into metrics.json.
    """
    from polydiff.core.io import atomic_write_json

    _, summary = _rollouts(cfg)
    atomic_write_json(run_dir / "metrics.json", summary)


@demo_stage(quick=("episodes=3",))
@verb("rollout")
def rollout(cfg: DictConfig, run_dir: Path) -> StageResult:
    """Roll a policy out with fixed seeds: metrics.json and a trajectory plot (rollout.png).

    The same rollouts and metrics as `polydiff policy evaluate` (model= a saved folder, null
    the shipped UMaze diffusion policy, or expert), plus rollout.png: the paths taken (on
    PointMaze drawn over the maze, green when the goal was reached); with gif=true also
    rollout.gif, the paths growing step by step.
    """
    from polydiff.core.io import atomic_write_json
    from polydiff.motion.policy.render import animate_rollouts, plot_rollouts

    result, summary = _rollouts(cfg)
    plot = plot_rollouts(result, run_dir / "rollout.png")
    if cfg.gif:
        animate_rollouts(result, run_dir / "rollout.gif")
    atomic_write_json(run_dir / "metrics.json", summary)
    low, high = summary["success_ci95"]
    rows = [("success rate", f"{summary['success_rate']:.2f} [{low:.2f}, {high:.2f}]"),
            ("mean return", f"{summary['mean_return']:.2f}"),
            ("network calls per action", f"{summary['network_calls_per_action']:.2f}"),
            ("ms per action", f"{summary['ms_per_action']:.2f}")]  # fmt: skip
    if "normalized_score" in summary:
        rows.append(("D4RL normalized score", f"{100 * summary['normalized_score']:.1f}"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    markdown = (
        f"{summary['policy']} in {summary['env_id']}, {summary['episodes']} seeded episodes "
        f"(seeds {cfg.seed}..{cfg.seed + cfg.episodes - 1}).\n\n| metric | value |\n|---|---|\n"
        + table
    )
    headline = {"success": round(summary["success_rate"], 3),
                "ms/action": round(summary["ms_per_action"], 2)}  # fmt: skip
    return StageResult(headline, markdown, [("Rollouts", plot)], summary)
