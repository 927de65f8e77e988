"""Policies and planners on PointMaze, side by side in one run: diffusion policy (DDPM-100,
DDIM-10, DPM-Solver++ 2M-10 on one network), Streaming Diffusion Policy, flow policy (1 and 2
Euler steps), BC MLP and the Diffuser-style planner, beside the scripted expert and random
actions, all judged by rollouts.

Data: PointMaze Medium demonstrations of the expert taking random ones of equally short routes
(`multimodal`, the test of mode averaging) and PointMaze UMaze expert demonstrations (episode i
reset with seed i). On UMaze the diffusion policy is the shipped `umaze-diffusion` checkpoint
(trained on the same 60 expert episodes) beside BC; SDP, flow and the planner run on Medium only
(CPU budget). Everything else is trained here with one recipe (fixed beforehand, nothing tuned
on the evaluation seeds). Evaluation episodes use seeds from
10000 on, none of which made a training episode. Success rate with a 95% Wilson interval;
normalized score = D4RL's (R - R_random) / (R_expert - R_random) with the scripted expert and
uniform random actions measured on the same seeds (episodic PointMaze pays 1 at the goal and
ends there, so R is the success indicator); an episode not at its goal after 300 steps (PointMaze
Medium's limit is 600, UMaze's 300) counts as a failure; network calls and ms of policy time per
executed action (one batched call serves every running episode).

Writes docs/benchmarks/policy.json and docs/benchmarks/policy.md.
Run: `nox -s bench -- policy` (or `python benchmarks/run.py policy [--quick] [--runs DIR]`);
trained models go to --runs (a rerun resumes, or reuses finished trainings).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from polydiff.core.io import atomic_write_text
from polydiff.motion.policy.common import CHECKPOINTS, load_policy, make_policy, train_policy
from polydiff.motion.policy.envs import make_env
from polydiff.motion.policy.evaluate import ScriptedChunkPolicy, rollout
from polydiff.motion.policy.experts import PointMazeExpert, RandomPolicy, pointmaze_dataset
from polydiff.motion.policy.methods import DiffuserPlanner

ROOT = Path(__file__).resolve().parents[1]
EVAL_SEED = 10_000
TRAIN_SEED = 0
# row -> (trained model, sampler settings at rollout)
ROWS = {
    "DP DDPM-100": ("diffusion", {"solver": "ddpm", "steps": 100}),
    "DP DDIM-10": ("diffusion", {"solver": "ddim", "steps": 10}),
    "DP DPM-Solver++ 2M-10": ("diffusion", {"solver": "dpmpp_2m", "steps": 10}),
    "SDP (N=10, DDIM)": ("streaming", {}),
    "flow, 1 step": ("flow", {"steps": 1}),
    "flow, 2 steps": ("flow", {"steps": 2}),
    "BC MLP": ("bc", {}),
    "planner (inpainting, DDIM-10)": ("planner", {}),
}
SIZES = {
    "full": {"medium_episodes": 100, "eval_episodes": 30, "max_steps": 300, "steps": 1000,
             "batch_size": 64, "channels": 16, "lr": 1e-3},
    "quick": {"medium_episodes": 4, "eval_episodes": 2, "max_steps": 40, "steps": 4,
              "batch_size": 16, "channels": 8, "lr": 1e-3},
}  # fmt: skip
TASKS = {"medium": "multimodal", "umaze": "expert"}
UMAZE_EPISODES = 60  # as the shipped umaze-diffusion checkpoint
UMAZE_MODELS = ("diffusion", "bc")


def build(model: str, data, size: dict):
    """The untrained model of a row, one network size for every U-Net method."""
    torch.manual_seed(TRAIN_SEED)
    if model == "planner":  # state-action plans of 32 steps, the goal inpainted at the end
        return DiffuserPlanner.for_data(
            data, channels=size["channels"], horizon=32, steps=10, goal_columns=(0, 1),
            goal_source=(2, 3),
        )  # fmt: skip
    if model == "bc":
        return make_policy("bc", data)
    return make_policy(model, data, channels=size["channels"])


def trained(model: str, task: str, data, size: dict, runs: Path):
    """(policy, where it was trained) for a row's model; the UMaze diffusion policy is the
    shipped checkpoint (1000 steps of batch 128 at lr 3e-4, its README)."""
    if task == "umaze" and model == "diffusion":
        return load_policy(CHECKPOINTS / "umaze-diffusion"), "shipped"
    policy = build(model, data, size)
    options = {k: size[k] for k in ("steps", "batch_size", "lr")}
    train_policy(policy, data, runs / task / model, seed=TRAIN_SEED, **options)
    return policy, "here"


def scripted(name: str, env_id: str) -> ScriptedChunkPolicy:
    env = make_env(env_id, continuing_task=False)
    try:
        script = PointMazeExpert(env) if name == "expert" else RandomPolicy(env.action_space)
        return ScriptedChunkPolicy(script, env.observation_space, seed=EVAL_SEED)
    finally:
        env.close()


def measure(policy, env_id: str, seeds: range, max_steps: int) -> dict:
    torch.manual_seed(EVAL_SEED)
    s = rollout(policy, env_id, seeds, max_steps).summary()
    return {k: s[k] for k in ("success_rate", "success_ci95", "mean_return", "mean_length",
                              "network_calls_per_action", "ms_per_action")}  # fmt: skip


def run_task(task: str, size: dict, runs: Path) -> dict:
    episodes = UMAZE_EPISODES if task == "umaze" else size["medium_episodes"]
    data = pointmaze_dataset(task, TASKS[task], episodes, seed=TRAIN_SEED)
    seeds = range(EVAL_SEED, EVAL_SEED + size["eval_episodes"])
    limit = size["max_steps"]
    rows = {name: measure(scripted(name, data.env_id), data.env_id, seeds, limit)
            for name in ("expert", "random actions")}  # fmt: skip
    models: dict = {}
    for row, (model, sampler) in ROWS.items():
        if task == "umaze" and model not in UMAZE_MODELS:
            continue  # CPU budget: the other methods are measured on Medium only
        if model not in models:
            models[model] = trained(model, task, data, size, runs)
        policy, origin = models[model]
        for field, value in sampler.items():
            setattr(policy.config, field, value)
        rows[row] = measure(policy, data.env_id, seeds, limit) | {
            "parameters": sum(p.numel() for p in policy.net.parameters()),
            "trained": origin,
        }
    low, high = rows["random actions"]["mean_return"], rows["expert"]["mean_return"]
    for r in rows.values():
        r["normalized_score"] = (r["mean_return"] - low) / (high - low) if high > low else None
    stats = data.stats()
    return {"env_id": data.env_id, "data": f"{TASKS[task]}, {stats['episodes']} episodes, "
            f"{stats['steps']} steps (seeds 0..{episodes - 1})", "eval_seeds":
            [seeds.start, seeds.stop - 1], "rows": rows}  # fmt: skip


def goals(results: dict) -> dict:
    medium = results["medium"]["rows"]
    ddpm, sdp, bc = medium["DP DDPM-100"], medium["SDP (N=10, DDIM)"], medium["BC MLP"]
    fewer = ddpm["network_calls_per_action"] / sdp["network_calls_per_action"]
    diffusion = [r for r in ROWS if ROWS[r][0] in ("diffusion", "streaming", "flow")]
    return {
        "sdp_5x_fewer_calls_than_dp_ddpm100_at_success_within_ci": bool(
            fewer >= 5 and ddpm["success_ci95"][0] <= sdp["success_rate"]
        ),
        "sdp_within_5_points_of_dp_ddpm100": sdp["success_rate"] >= ddpm["success_rate"] - 0.05,
        "diffusion_policy_beats_bc_on_multimodal_medium": bool(
            medium["DP DDIM-10"]["success_rate"] > bc["success_rate"]
        ),
        "every_diffusion_or_flow_row_beats_bc_on_multimodal_medium": all(
            medium[r]["success_rate"] > bc["success_rate"] for r in diffusion
        ),
    }


def fmt_row(name: str, r: dict) -> str:
    low, high = r["success_ci95"]
    score = "–" if r["normalized_score"] is None else f"{100 * r['normalized_score']:.0f}"
    params = f"{r['parameters']:,}" if "parameters" in r else "–"
    train = r.get("trained", "scripted")
    return (f"| {name} | {r['success_rate']:.2f} [{low:.2f}, {high:.2f}] | {score} | "
            f"{r['mean_length']:.0f} | {r['network_calls_per_action']:.2f} | "
            f"{r['ms_per_action']:.2f} | {params} | {train} |")  # fmt: skip


def report(out: dict) -> str:
    lines = [
        "# Policies on PointMaze (`nox -s bench -- policy`)",
        "",
        f"Command: `{out['command']}`; sizes {json.dumps(out['sizes'])}; training seed "
        f"{TRAIN_SEED}, evaluation seeds from {EVAL_SEED} (test episodes: none made a training "
        "episode; nothing was tuned on them, there is no validation split because no "
        f"hyperparameter was searched). Machine: {out['machine']}; {out['seconds']:.0f} s.",
        "",
        "Every U-Net method has the same network size (core `TemporalUNet`, channels "
        f"{out['sizes']['channels']}, H 16 / To 2 / Ta 8; SDP H 20, planner H 32 over states and "
        "actions) and the same training recipe (steps, batch, AdamW lr, EMA 0.995, core `fit`). "
        "Normalized score: (R - R_random) / (R_expert - R_random) x 100 with the scripted expert "
        "and uniform random actions on the same seeds; episodic PointMaze pays 1 at the goal, so "
        "it restates the success rate against those references. ms per action: policy time per "
        "lockstep control step, one batched call serving every running episode (1 CPU thread). "
        f"An episode that has not reached its goal after {out['sizes']['max_steps']} steps "
        "counts as a failure.",
    ]
    for res in out["results"].values():
        lines += ["", f"## {res['env_id']} ({res['data']})", "",
                  "| method | success [95% CI] | normalized score | mean length | network calls"
                  " / action | ms / action | parameters | trained |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        lines += [fmt_row(name, r) for name, r in res["rows"].items()]
    lines += ["", "## Goals", "", "| goal | met |", "|---|---|"]
    lines += [f"| {k} | {'yes' if v else 'no'} |" for k, v in out["goals"].items()]
    medium = out["results"]["medium"]["rows"]
    ratio = (medium["DP DDPM-100"]["network_calls_per_action"]
             / medium["SDP (N=10, DDIM)"]["network_calls_per_action"])  # fmt: skip
    lines += ["", f"SDP makes {ratio:.1f}x fewer network calls per action than DP DDPM-100 on "
              "Medium."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py policy")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--runs", type=Path, default=None, help="trained models (resumable)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    size = SIZES["quick" if args.quick else "full"]
    runs = args.runs or Path(tempfile.mkdtemp(prefix="policy-bench-"))
    start = time.perf_counter()
    results = {task: run_task(task, size, runs) for task in TASKS}
    out = {
        "command": "nox -s bench -- policy" + (" --quick" if args.quick else ""),
        "machine": "2 shared CPU cores, no GPU",
        "sizes": size,
        "train_seed": TRAIN_SEED,
        "eval_seed": EVAL_SEED,
        "results": results,
        "goals": {},
        "seconds": 0.0,
    }
    out["goals"] = goals(results)
    out["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "policy.json", json.dumps(out, indent=2) + "\n")
    atomic_write_text(args.out / "policy.md", report(out))
    print(report(out))
    return 0


__all__ = ["main"]
