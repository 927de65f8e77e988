"""End-to-end runs of `polydiff policy data|train|rollout|evaluate` at tiny sizes, and the matrix
of refused inputs (exit code 2, one stderr line naming the file or option, nothing written).

The verbs run in-process through `polydiff.apps.cli.dispatch`; the demo stage and `--help` run
the console script.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import check_demo_report

from polydiff.apps.cli import dispatch
from polydiff.apps.registry import verbs
from polydiff.motion.policy.common import load_policy
from polydiff.motion.policy.data import read_d4rl, read_minari
from polydiff.motion.policy.experts import pointmaze_dataset
from polydiff.motion.policy.fork import FORK_ID, fork_dataset
from polydiff.motion.policy.pusht import PUSHT_ID, pusht_dataset

UMAZE = "PointMaze_UMaze-v3"
TINY_DIFFUSION = ("method=diffusion", "diffusion.channels=8", "steps=3", "batch_size=8")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("policy")


def run(work: Path, verb: str, *overrides: str, out: str) -> tuple[int, Path]:
    code = dispatch(["policy", verb, *overrides, f"hydra.run.dir={work / out}"])
    return code, work / out


def ok(work: Path, verb: str, *overrides: str, out: str) -> Path:
    code, folder = run(work, verb, *overrides, out=out)
    assert code == 0
    return folder


@pytest.fixture(scope="module")
def dataset(work: Path) -> Path:
    return ok(work, "data", "episodes=4", out="data") / "data.hdf5"


@pytest.fixture(scope="module")
def bc_model(work: Path, dataset: Path) -> Path:
    args = (f"data={dataset}", "method=bc", "bc.hidden=32", "steps=200", "batch_size=32")
    return ok(work, "train", *args, "lr=1e-3", out="bc") / "model"


def test_console_script_lists_the_verbs(polydiff):
    out = polydiff("policy", "--help")
    assert out.returncode == 0, out.stderr
    listed = {name: v.summary for name, v in verbs("policy").items()}
    assert set(listed) == {"data", "train", "rollout", "evaluate"}
    assert all(f"  {n} " in out.stdout and line in out.stdout for n, line in listed.items())


def test_data_writes_the_expert_dataset_of_the_library(dataset: Path):
    written = read_d4rl(dataset)
    expected = pointmaze_dataset("umaze", "expert", episodes=4, seed=0)
    assert written.env_id == UMAZE
    for key, value in expected.arrays().items():
        np.testing.assert_array_equal(written.arrays()[key], value, err_msg=key)
    info = json.loads((dataset.parent / "data.json").read_text())
    assert (info["episodes"], info["steps"], info["success_rate"]) == (4, len(expected), 1.0)


def test_data_converts_a_minari_dataset(work: Path):
    folder = work / "minari" / "data"
    folder.mkdir(parents=True)
    spec = json.dumps({"id": UMAZE})
    (folder / "metadata.json").write_text(json.dumps({"env_spec": spec}))
    rng = np.random.default_rng(0)
    with h5py.File(folder / "main_data.hdf5", "w") as f:
        for i, steps in enumerate((5, 7)):
            g = f.create_group(f"episode_{i}")
            for key, dim in (("observation", 4), ("achieved_goal", 2), ("desired_goal", 2)):
                g[f"observations/{key}"] = rng.normal(size=(steps + 1, dim))
            g["actions"] = rng.uniform(-1, 1, (steps, 2))
            g["rewards"] = np.zeros(steps)
            g["terminations"] = np.arange(steps) == steps - 1
            g["truncations"] = np.zeros(steps, bool)
    out = work / "converted.hdf5"
    ok(work, "data", f"input={folder.parent}", f"output={out}", out="minari_run")
    converted, source = read_d4rl(out), read_minari(folder.parent)
    assert (len(converted), len(converted.episodes()), converted.env_id) == (12, 2, UMAZE)
    np.testing.assert_array_equal(converted.observations, source.observations)


def test_train_exports_a_policy_for_the_data(bc_model: Path, dataset: Path):
    policy = load_policy(bc_model)
    config = policy.config
    assert (config.env_id, config.obs_dim, config.act_dim) == (UMAZE, 8, 2)
    info = json.loads((bc_model.parent / "train.json").read_text())
    assert info["method"] == "bc" and info["steps"] == 200 and np.isfinite(info["final_loss"])
    # 200 steps of regression on expert actions fit them far better than predicting zeros
    windows = policy.windows(read_d4rl(dataset))
    batch = policy.batch(windows, np.arange(len(windows)))
    assert info["final_loss"] < 0.5 * float(batch["action"].pow(2).mean())


def test_train_again_in_its_folder_resumes(work: Path, dataset: Path):
    args = (f"data={dataset}", "method=bc", "bc.hidden=8", "batch_size=16", "checkpoint_every=10")
    folder = ok(work, "train", *args, "steps=20", out="resumed")
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    ok(work, "train", *args, "steps=30", out="resumed")
    info = json.loads((folder / "train.json").read_text())
    assert info["steps"] == 30
    launches = sorted(p.name for p in (folder / "logs").iterdir())
    assert launches == ["version_0", "version_1"]  # the second launch went on from step 20
    assert load_policy(folder / "model").config.env_id == UMAZE


@pytest.mark.parametrize("method", ["diffusion", "streaming", "flow"])
def test_train_every_generative_method_and_roll_it_out(work: Path, dataset: Path, method: str):
    args = (f"data={dataset}", f"method={method}", f"{method}.channels=8", "steps=3")
    model = ok(work, "train", *args, "batch_size=8", out=f"t_{method}") / "model"
    assert type(load_policy(model)).__name__.lower().startswith(method)
    args = (f"model={model}", "episodes=2", "max_steps=16")
    folder = ok(work, "evaluate", *args, out=f"e_{method}")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["episodes"] == 2 and metrics["network_calls_per_action"] > 0


def test_fork_data_trains_and_rolls_out(work: Path):
    dataset = ok(work, "data", "maze=fork", "episodes=6", out="fork") / "data.hdf5"
    written = read_d4rl(dataset)
    assert written.env_id == FORK_ID
    np.testing.assert_array_equal(written.actions, fork_dataset(6, seed=0).actions)
    args = (f"data={dataset}", "method=bc", "bc.hidden=16", "steps=3", "batch_size=8")
    model = ok(work, "train", *args, out="fork_bc") / "model"
    folder = ok(work, "rollout", f"model={model}", "episodes=2", out="fork_rollout")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["env_id"] == FORK_ID and metrics["episodes"] == 2
    assert (folder / "rollout.png").read_bytes()[:4] == b"\x89PNG"


def test_pusht_data_and_its_expert_roll_out(work: Path):
    dataset = ok(work, "data", "maze=pusht", "episodes=1", "variant=noisy", out="pusht")
    written = read_d4rl(dataset / "data.hdf5")
    assert written.env_id == PUSHT_ID and (written.obs_dim, written.act_dim) == (5, 2)
    expected = pusht_dataset("noisy", episodes=1, seed=0, noise=10.0)  # noise=null: 10 pixels
    np.testing.assert_array_equal(written.actions, expected.actions)
    args = ("model=expert", f"env_id={PUSHT_ID}", "episodes=1", "max_steps=20")
    folder = ok(work, "evaluate", *args, out="pusht_expert")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["env_id"] == PUSHT_ID and 0.0 <= metrics["mean_max_reward"] <= 1.0


def test_rollout_of_the_expert_succeeds_and_plots(work: Path):
    args = ("model=expert", f"env_id={UMAZE}", "episodes=3", "gif=true")
    folder = ok(work, "rollout", *args, out="expert")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["success_rate"] == 1.0 and metrics["network_calls_per_action"] == 0
    low, high = metrics["success_ci95"]
    assert 0.4 < low < 1.0 == high
    assert (folder / "rollout.png").read_bytes()[:4] == b"\x89PNG"
    assert (folder / "rollout.gif").read_bytes()[:6] == b"GIF89a"
    assert "success rate" in (folder / "report.md").read_text()


def test_evaluate_repeats_exactly_with_the_same_seed(work: Path, bc_model: Path):
    args = (f"model={bc_model}", "episodes=2", "max_steps=40")
    first, second = (ok(work, "evaluate", *args, out=f"ev{i}") / "metrics.json" for i in (1, 2))
    a, b = (json.loads(p.read_text()) for p in (first, second))
    for key in ("success_rate", "mean_return", "mean_length", "network_calls_per_action"):
        assert a[key] == b[key], key
    assert a["mean_length"] == 40 or a["success_rate"] > 0


def test_quick_demo_stage_end_to_end(polydiff, tmp_path: Path):
    out = polydiff("demo", "domains=[policy]", "quick=true")
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs" / "demo").iterdir()
    check_demo_report(run_dir, "policy", ["policy/rollout.png"], row=r".*success")
    metrics = json.loads((run_dir / "policy" / "metrics.json").read_text())
    assert metrics["episodes"] == 3 and metrics["env_id"] == UMAZE


# ---- refused inputs ------------------------------------------------------------------------


def _write_hdf5(path: Path, drop=None, short=None, obs_dim=8, env_id: str | None = UMAZE):
    """A small D4RL file of UMaze shape; ``drop`` leaves a key out, ``short`` cuts one."""
    n = 10
    arrays = {
        "observations": np.zeros((n, obs_dim), np.float32),
        "actions": np.zeros((n, 2), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
    }
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if key != drop:
                f[key] = value[:-3] if key == short else value
        if env_id is not None:
            f.attrs["env_id"] = env_id
    return path


@pytest.fixture(scope="module")
def bad_files(work: Path) -> dict[str, Path]:
    folder = work / "bad_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("not HDF5")
    (folder / "a_file").write_text("a file, not a folder")
    return {
        "no_actions": _write_hdf5(folder / "no_actions.hdf5", drop="actions"),
        "short_rewards": _write_hdf5(folder / "short_rewards.hdf5", short="rewards"),
        "obs7": _write_hdf5(folder / "obs7.hdf5", obs_dim=7),
        "no_env": _write_hdf5(folder / "no_env.hdf5", env_id=None),
        "notes": folder / "notes.txt",
        "a_file": folder / "a_file",
    }


# (verb, overrides with {placeholders}, text the error line must contain)
BAD = [
    ("train", ["data={no_actions}"], "no_actions.hdf5: missing key 'actions'"),
    ("train", ["data={short_rewards}"], "short_rewards.hdf5"),
    ("train", ["data={obs7}"], "obs7.hdf5: observations have 7 columns"),
    ("train", ["data={notes}"], "notes.txt: not a readable HDF5 file"),
    ("train", ["data=nowhere.hdf5"], "data=nowhere.hdf5"),
    ("train", [], "data="),
    ("train", ["data={no_env}", "env_id=Nope-v0"], "env_id: unknown environment 'Nope-v0'"),
    ("train", ["data={dataset}", "env_id=PointMaze_Medium-v3"], "not in env_id=PointMaze_Med"),
    ("train", ["data={dataset}", "method=transformer"], "method=transformer"),
    ("train", ["data={dataset}", "steps=0"], "steps must be a positive integer"),
    ("train", ["data={dataset}", "batch_size=-2"], "batch_size"),
    ("train", ["data={dataset}", "lr=0"], "lr must be > 0"),
    ("train", ["data={dataset}", "checkpoint_every=0"], "checkpoint_every must be a positive"),
    ("train", ["data={dataset}", "horizon=4"], "horizon: 4 is shorter"),
    ("train", ["data={dataset}", "+bc.width=3", "method=bc"], "bc.width"),
    ("data", ["episodes=0"], "episodes must be a positive integer"),
    ("data", ["variant=noisy", "noise=-1"], "noise must be >= 0, got -1"),
    ("data", ["maze=spiral"], "maze: unknown maze 'spiral'"),
    ("data", ["variant=perfect"], "variant: unknown variant"),
    ("data", ["maze=pusht", "variant=multimodal"], "variant: unknown PushT variant"),
    ("data", ["output={a_file}/data.hdf5"], "a_file is a file, not a folder"),
    ("data", ["input=no_such_minari"], "input=no_such_minari"),
    ("rollout", ["model=nowhere"], "model=nowhere"),
    ("rollout", ["model={bad_files_dir}"], "config.json: missing"),
    ("rollout", ["model={bc_model}", "env_id=PointMaze_Medium-v3"], "trained for PointMaze_UMaze"),
    ("rollout", ["model={bc_model}", "env_id=Nope-v0"], "Nope-v0"),
    ("rollout", ["model=expert"], "model=expert: the scripted expert needs"),
    ("rollout", ["model={bc_model}", "episodes=0"], "episodes must be a positive integer"),
    ("evaluate", ["model={bc_model}", "max_steps=0"], "max_steps must be a positive integer"),
    ("evaluate", ["model={bc_model}", "solver=ddim"], "solver: the policy"),
]


@pytest.mark.parametrize(("verb", "overrides", "needle"), BAD, ids=[b[2][:40] for b in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    work, dataset, bc_model, bad_files, capsys, verb, overrides, needle
):
    names = {k: str(v) for k, v in bad_files.items()}
    names |= {"dataset": str(dataset), "bc_model": str(bc_model)}
    names["bad_files_dir"] = str(bad_files["notes"].parent)
    out = f"bad_{abs(hash((verb, *overrides))) % 10**8}"
    capsys.readouterr()
    code, folder = run(work, verb, *(o.format(**names) for o in overrides), out=out)
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and needle in errors[0], err
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert set(left) <= {".hydra", "polydiff.log"}, left
    assert not (bad_files["a_file"].parent / "data.hdf5").exists()


def test_readme_quick_start_at_reduced_size_beats_random_actions(tmp_path: Path):
    """The README's data -> train method=diffusion -> evaluate, with 300 training steps (the
    default is 1000) and 10 episodes: the trained policy reaches the goal in at least 8 of 10
    UMaze episodes, and more often than uniform random actions on the same seeds."""
    from polydiff.motion.policy.envs import make_env
    from polydiff.motion.policy.evaluate import ScriptedChunkPolicy, rollout
    from polydiff.motion.policy.experts import RandomPolicy

    data = ok(tmp_path, "data", "maze=umaze", "variant=expert", "episodes=60", out="umaze")
    args = (f"data={data / 'data.hdf5'}", "method=diffusion", "steps=300")
    model = ok(tmp_path, "train", *args, out="dp") / "model"
    folder = ok(tmp_path, "evaluate", f"model={model}", "episodes=10", out="eval")
    ours = json.loads((folder / "metrics.json").read_text())["success_rate"]
    env = make_env(UMAZE, continuing_task=False)
    random_actions = ScriptedChunkPolicy(RandomPolicy(env.action_space), env.observation_space)
    env.close()
    chance = rollout(random_actions, UMAZE, range(10)).summary()["success_rate"]  # evaluate's seeds
    assert ours >= 0.8 and ours > chance, (ours, chance)
