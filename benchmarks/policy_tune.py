"""Why BC beats the diffusion policy on multimodal PointMaze Medium, and which change of the
diffusion recipe helps: diagnostics and short training runs scored on VALIDATION data only (never
the test seeds of `benchmarks/policy.py`).

Data: the benchmark's training set (PointMaze Medium `multimodal`, 100 episodes, seed 0);
validation = 20 more episodes of the same expert (seed 5000: windows for open-loop errors) and 20
rollout seeds from 20000 (the benchmark tests on seeds from 10000). Diagnostics: the share of
validation states where the tie-breaking expert has more than one action (how much the task
punishes mode averaging at all), and per model the open-loop error of the executed actions
(positions To-1 .. To+Ta-2 of a sampled chunk against the demonstrated ones, normalized units,
DDIM-10) and the x0 error of the denoiser at high noise (t = 0.9, where DDIM commits to a mode;
with the observation known, the conditional mean is what BC predicts). Each variant is the
benchmark's recipe (U-Net channels 16, 1000 steps, batch 64, AdamW lr 1e-3, EMA 0.995, seed 0)
with one change; validation success with DDIM-10 (SDP: its own sampler) over 20 episodes.

Run: `python benchmarks/run.py policy_tune [--runs DIR]`; writes
docs/benchmarks/policy-tuning.{md,json}. Trained runs are kept in --runs and reused by a rerun
(the training seconds are stored beside each).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from polydiff.core.io import atomic_write_text
from polydiff.core.param import to_x0
from polydiff.motion.policy.common import make_policy, train_policy
from polydiff.motion.policy.envs import make_env
from polydiff.motion.policy.evaluate import rollout
from polydiff.motion.policy.experts import PointMazeExpert, pointmaze_dataset

ROOT = Path(__file__).resolve().parents[1]
TRAIN_SEED, VALIDATION_DATA_SEED, VALIDATION_ROLLOUT_SEED = 0, 5000, 20_000
RECIPE = {"steps": 1000, "batch_size": 64, "lr": 1e-3}
# variant -> (model, config changes)
VARIANTS = {
    "DP eps (benchmark recipe)": ("diffusion", {}),
    "DP eps + obs encoder 256": ("diffusion", {"obs_encoder": 256}),
    "DP v-prediction": ("diffusion", {"prediction": "v"}),
    "DP x0-prediction": ("diffusion", {"prediction": "x0"}),
    "SDP eps (benchmark recipe)": ("streaming", {}),
    "SDP v-prediction": ("streaming", {"prediction": "v"}),
    "flow (benchmark recipe)": ("flow", {}),
    "BC MLP (benchmark recipe)": ("bc", {}),
}
EXECUTED = slice(1, 9)  # To - 1 .. To + Ta - 2 for To 2, Ta 8


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def multimodal_share(obs: np.ndarray, env_id: str) -> float:
    """Share of (raw) observations where some tie-break order of the expert acts otherwise."""
    env = make_env(env_id, continuing_task=False)
    expert, space = PointMazeExpert(env), env.observation_space
    orders = list(itertools.permutations(expert.preference))
    several = 0
    for o in obs:
        d = gym.spaces.unflatten(space, o.astype(np.float64))
        actions = set()
        for order in orders:
            expert.preference = order
            actions.add(tuple(np.round(expert(d), 3)))
        several += len(actions) > 1
    env.close()
    return several / len(obs)


def high_noise_x0_error(policy, batch, t: float = 0.9) -> float | None:
    """Mean squared x0 error of the denoiser at time t (VP-path models only)."""
    if getattr(policy, "prediction", "velocity") == "velocity" or not hasattr(policy, "path"):
        return None
    action = batch["action"]
    torch.manual_seed(0)
    per_position = policy.name == "streaming_policy"
    tt = torch.full((len(action), action.shape[1]) if per_position else (len(action),), t)
    x_t = policy.path.marginal(action, tt, torch.randn_like(action))
    with torch.no_grad():
        pred = policy.net(x_t, tt, batch["obs"].flatten(1))
    x0 = to_x0(pred, policy.prediction, x_t, tt, policy.path)
    return float((x0 - action).square().mean())


def score(name: str, data, val, runs: Path, seeds: range) -> dict:
    model, changes = VARIANTS[name]
    torch.manual_seed(TRAIN_SEED)
    options = {} if model == "bc" else {"channels": 16}
    policy = make_policy(model, data, **options, **changes)
    folder = runs / slug(name)
    record, reused = folder / "train_seconds.json", (folder / "model").is_dir()
    start = time.perf_counter()
    info = train_policy(policy, data, folder, seed=TRAIN_SEED, **RECIPE)
    if not reused:
        record.write_text(json.dumps({"seconds": time.perf_counter() - start}))
    seconds = json.loads(record.read_text())["seconds"] if record.is_file() else None
    windows = policy.windows(val)
    batch = policy.batch(windows, np.random.default_rng(1).choice(len(windows), 256, False))
    out = {"train_seconds": seconds, "final_loss": info["final_loss"]}
    if not getattr(policy, "stateful", False):
        torch.manual_seed(0)
        with torch.no_grad():
            chunk = policy.predict(batch["obs"])
        err = (chunk[:, EXECUTED] - batch["action"][:, EXECUTED]).square().mean()
        out["open_loop_mse"] = float(err)
    out["x0_mse_at_t09"] = high_noise_x0_error(policy, batch)
    torch.manual_seed(VALIDATION_ROLLOUT_SEED)
    s = rollout(policy, data.env_id, seeds, 300).summary()
    out |= {k: s[k] for k in ("success_rate", "success_ci95", "mean_length")}
    out["network_calls_per_action"] = s["network_calls_per_action"]
    return out


def report(out: dict) -> str:
    lines = [
        "# Policy recipe tuning on validation data (`python benchmarks/run.py policy_tune`)",
        "",
        f"Command: `{out['command']}`. Machine: {out['machine']}; {out['seconds']:.0f} s "
        "(trainings reused from --runs count their stored seconds below).",
        "",
        "VALIDATION only: open-loop errors on 20 validation episodes (data seed "
        f"{VALIDATION_DATA_SEED}), rollouts on seeds {VALIDATION_ROLLOUT_SEED}.."
        f"{VALIDATION_ROLLOUT_SEED + out['episodes'] - 1}; `benchmarks/policy.py` reports on its "
        "own test seeds (from 10000). Training data: the benchmark's (PointMaze Medium "
        "multimodal, 100 episodes, seed 0), recipe " + json.dumps(RECIPE) + ", U-Net channels 16.",
        "",
        f"Share of validation states where the expert's tie-break order changes its action: "
        f"{out['multimodal_share']:.3f} (the rest are unimodal: Medium hardly punishes mode "
        "averaging, so BC's mean action is right almost everywhere).",
        "",
        "| variant | final train loss | open-loop MSE (executed actions) | x0 MSE at t=0.9 | "
        "validation success [95% CI] | mean length | calls / action | train s (wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in out["variants"].items():
        mse = r.get("open_loop_mse")
        x0 = r["x0_mse_at_t09"]
        low, high = r["success_ci95"]
        secs = "–" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
        lines.append(
            f"| {name} | {r['final_loss']:.3f} | {'–' if mse is None else f'{mse:.3f}'} | "
            f"{'–' if x0 is None else f'{x0:.3f}'} | {r['success_rate']:.2f} [{low:.2f}, "
            f"{high:.2f}] | {r['mean_length']:.0f} | {r['network_calls_per_action']:.2f} | "
            f"{secs} |"
        )
    lines += ["", f"Chosen for the benchmark: {out['chosen']}.", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py policy_tune")
    parser.add_argument("--runs", type=Path, default=None, help="trained models (reused)")
    parser.add_argument("--episodes", type=int, default=20, help="validation rollouts")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = args.runs or Path(tempfile.mkdtemp(prefix="policy-tune-"))
    start = time.perf_counter()
    data = pointmaze_dataset("medium", "multimodal", 100, seed=TRAIN_SEED)
    val = pointmaze_dataset("medium", "multimodal", 20, seed=VALIDATION_DATA_SEED)
    seeds = range(VALIDATION_ROLLOUT_SEED, VALIDATION_ROLLOUT_SEED + args.episodes)
    picks = np.random.default_rng(1).choice(len(val), 256, replace=False)
    variants = {name: score(name, data, val, runs, seeds) for name in args.variants}
    dp = {n: r for n, r in variants.items() if n.startswith("DP")}
    out = {
        "command": "python benchmarks/run.py policy_tune",
        "machine": "2 shared CPU cores, no GPU",
        "episodes": args.episodes,
        "multimodal_share": multimodal_share(val.observations[picks], val.env_id),
        "variants": variants,
        "chosen": max(dp, key=lambda n: (dp[n]["success_rate"], -dp[n]["open_loop_mse"])),
        "seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "policy-tuning.json", json.dumps(out, indent=2) + "\n")
    atomic_write_text(args.out / "policy-tuning.md", report(out))
    print(report(out))
    return 0


__all__ = ["main"]
