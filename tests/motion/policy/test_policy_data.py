"""D4RL / Minari readers and writer, normalizers, training windows and reference scores."""

import json
import re

import h5py
import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.policy.data import (
    Normalizer,
    OfflineData,
    SequenceWindows,
    normalized_score,
    read_d4rl,
    read_minari,
    reference_scores,
    write_d4rl,
)


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working folder on model warnings."""
    monkeypatch.chdir(tmp_path)


OBS, ACT = 11, 3  # Hopper-v5's sizes


def make_data(lengths=(5, 3, 4), last_timeout=True, seed=0) -> OfflineData:
    """Episodes of the given lengths: the first ends by a terminal, the others by timeouts."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    ends = np.cumsum(lengths) - 1
    terminals[ends[0]] = True
    timeouts[ends[1:]] = True
    if not last_timeout:
        timeouts[ends[-1]] = False
    obs = rng.normal(size=(n, OBS))
    return OfflineData(
        obs,
        rng.uniform(-1, 1, (n, ACT)),
        rng.normal(size=n),
        terminals,
        timeouts,
        obs + 0.5,
        {"qpos": rng.normal(size=(n, 6)), "success": terminals.copy()},
        "Hopper-v5",
    )


def assert_same(a: OfflineData, b: OfflineData):
    assert a.env_id == b.env_id
    assert a.arrays().keys() == b.arrays().keys()
    for key, value in a.arrays().items():
        assert value.dtype == b.arrays()[key].dtype, key
        np.testing.assert_array_equal(value, b.arrays()[key], err_msg=key)


# ---- D4RL layout -------------------------------------------------------------------------


def test_d4rl_round_trip_is_exact(tmp_path):
    data = make_data()
    path = write_d4rl(tmp_path / "hopper.hdf5", data)
    back = read_d4rl(path)
    assert_same(data, back)
    with h5py.File(path) as f:  # the plain D4RL keys, readable by any D4RL loader
        assert {"observations", "actions", "rewards", "terminals", "timeouts"} <= set(f)
        assert f["infos/qpos"].shape == (12, 6) and f["terminals"].dtype == bool


def test_episodes_split_at_terminals_and_timeouts():
    data = make_data((5, 3, 4))
    assert data.episode_bounds() == [(0, 5), (5, 8), (8, 12)]
    episodes = data.episodes()
    assert [len(e) for e in episodes] == [5, 3, 4]
    np.testing.assert_array_equal(episodes[1].actions, data.actions[5:8])
    np.testing.assert_array_equal(episodes[2].infos["qpos"], data.infos["qpos"][8:])
    assert_same(OfflineData.concat(episodes), data)


def test_steps_after_the_last_flag_form_an_unfinished_episode():
    data = make_data((5, 3, 4), last_timeout=False)
    assert data.episode_bounds() == [(0, 5), (5, 8), (8, 12)]
    assert not data.episodes()[-1].timeouts.any()


def test_real_d4rl_conventions_are_read(tmp_path):
    """Float terminals, N x 1 rewards, no timeouts, metadata/* and no env id (as in the
    original D4RL files)."""
    path = tmp_path / "old.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.ones((6, OBS), np.float32)
        f["actions"] = np.zeros((6, ACT), np.float32)
        f["rewards"] = np.arange(6, dtype=np.float32)[:, None]
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0], np.float32)
        f["metadata/algorithm"] = "SAC"
    data = read_d4rl(path)
    assert data.rewards.shape == (6,) and data.terminals.dtype == bool
    assert data.episode_bounds() == [(0, 3), (3, 6)] and data.env_id is None
    assert data.next_observations is None and data.infos == {}


def write_raw(path, arrays, attrs=None):
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
        f.attrs.update(attrs or {})
    return path


def good_arrays(n=6):
    return {
        "observations": np.zeros((n, OBS), np.float32),
        "actions": np.zeros((n, ACT), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
        "next_observations": np.zeros((n, OBS), np.float32),
        "infos/qpos": np.zeros((n, 6)),
    }


def _without(key):
    return lambda a: {k: v for k, v in a.items() if k != key}


def _replace(key, value):
    return lambda a: {**a, key: value}


BAD_D4RL = {
    "no observations": (_without("observations"), "observations"),
    "no actions": (_without("actions"), "actions"),
    "no rewards": (_without("rewards"), "rewards"),
    "no terminals": (_without("terminals"), "terminals"),
    "short actions": (_replace("actions", np.zeros((5, ACT))), "actions"),
    "long rewards": (_replace("rewards", np.zeros(7)), "rewards"),
    "short terminals": (_replace("terminals", np.zeros(4, bool)), "terminals"),
    "short timeouts": (_replace("timeouts", np.zeros(5, bool)), "timeouts"),
    "short infos": (_replace("infos/qpos", np.zeros((5, 6))), "infos/qpos"),
    "next obs size": (_replace("next_observations", np.zeros((6, OBS + 1))), "next_observations"),
    "1-D observations": (_replace("observations", np.zeros(6)), "observations"),
    "2-D terminals": (_replace("terminals", np.zeros((6, 2), bool)), "terminals"),
    "NaN actions": (_replace("actions", np.full((6, ACT), np.nan)), "actions"),
    "empty": (lambda a: {k: v[:0] for k, v in a.items()}, "observations"),
}


@pytest.mark.parametrize("case", list(BAD_D4RL))
def test_bad_d4rl_files_name_the_file_and_the_key(tmp_path, case):
    edit, key = BAD_D4RL[case]
    path = write_raw(tmp_path / "bad.hdf5", edit(good_arrays()))
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path))}/bad\.hdf5: .*'{key}'"):
        read_d4rl(path)


@pytest.mark.parametrize(
    ("env_id", "arrays", "match"),
    [
        ("NoSuchEnv-v0", good_arrays(), "unknown environment 'NoSuchEnv-v0'"),
        ("Hopper-v5", _replace("observations", np.zeros((6, 4)))(good_arrays()), "observations"),
        ("HalfCheetah-v5", good_arrays(), "observations have 11 columns, HalfCheetah-v5"),
        ("Hopper-v5", _replace("actions", np.zeros((6, 2)))(good_arrays()), "actions have 2"),
    ],
)
def test_sizes_are_checked_against_the_environment(tmp_path, env_id, arrays, match):
    arrays = {k: v for k, v in arrays.items() if k != "next_observations"}
    path = write_raw(tmp_path / "env.hdf5", arrays)
    with pytest.raises(InputError, match=match) as err:
        read_d4rl(path, env_id=env_id)
    assert str(err.value).startswith(str(path))
    # The same check when the id is stored in the file.
    write_raw(path, arrays, {"env_id": env_id})
    with pytest.raises(InputError, match=match):
        read_d4rl(path)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_d4rl(tmp_path / "nothing.hdf5")
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(InputError, match=r"text.hdf5: not a readable HDF5 file"):
        read_d4rl(tmp_path / "text.hdf5")


def test_writer_refuses_bad_data_and_leaves_no_file(tmp_path):
    data = make_data()
    data.actions = data.actions[:-1]
    with pytest.raises(InputError, match="'actions' has 11 rows"):
        write_d4rl(tmp_path / "out.hdf5", data)
    assert list(tmp_path.iterdir()) == []


# ---- Minari layout (built here by hand, as minari's HDF5 storage writes it) ----------------


def write_minari_fixture(folder, episodes, env_id="PointMaze_UMaze-v3"):
    """A Minari dataset folder: Dict observations (T + 1 rows), infos with T + 1 rows."""
    data = folder / "data"
    data.mkdir(parents=True)
    spec = json.dumps({"id": env_id, "entry_point": "x:y", "max_episode_steps": 300})
    meta = {"total_episodes": len(episodes), "data_format": "hdf5", "env_spec": spec}
    (data / "metadata.json").write_text(json.dumps(meta))
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for i, ep in enumerate(episodes):
            g = f.create_group(f"episode_{i}")
            g.attrs.update({"id": i, "total_steps": len(ep["actions"])})
            for key in ("observation", "achieved_goal", "desired_goal"):
                g[f"observations/{key}"] = ep[key]
            for key in ("actions", "rewards", "terminations", "truncations"):
                g[key] = ep[key]
            g["infos/success"] = ep["success"]
            g["infos/text"] = np.array([b"a"] * (len(ep["actions"]) + 1))
    return folder


def minari_episode(steps, seed, terminated=True):
    rng = np.random.default_rng(seed)
    flags = np.zeros(steps, bool)
    flags[-1] = True
    return {
        "observation": rng.normal(size=(steps + 1, 4)),
        "achieved_goal": rng.normal(size=(steps + 1, 2)),
        "desired_goal": rng.normal(size=(steps + 1, 2)),
        "actions": rng.uniform(-1, 1, (steps, 2)).astype(np.float32),
        "rewards": rng.normal(size=steps),
        "terminations": flags & terminated,
        "truncations": flags & (not terminated),
        "success": np.arange(steps + 1) == steps,
    }


def test_minari_episodes_read_into_the_d4rl_layout(tmp_path):
    # 11 episodes: episode_10 must come after episode_9, not after episode_1.
    episodes = [minari_episode(3 + i, i, terminated=i % 2 == 0) for i in range(11)]
    folder = write_minari_fixture(tmp_path / "pointmaze-umaze-v0", episodes)
    data = read_minari(folder)
    assert data.env_id == "PointMaze_UMaze-v3" and data.obs_dim == 8 and data.act_dim == 2
    assert [len(e) for e in data.episodes()] == [3 + i for i in range(11)]
    for ep, raw in zip(data.episodes(), episodes):
        # Keys in sorted order: achieved_goal, desired_goal, observation (gymnasium's flatten).
        flat = np.concatenate([raw[k] for k in ("achieved_goal", "desired_goal", "observation")], 1)
        np.testing.assert_allclose(ep.observations, flat[:-1], rtol=1e-6)
        np.testing.assert_allclose(ep.next_observations, flat[1:], rtol=1e-6)
        np.testing.assert_array_equal(ep.actions, raw["actions"])
        np.testing.assert_array_equal(ep.terminals, raw["terminations"])
        np.testing.assert_array_equal(ep.timeouts, raw["truncations"])
        np.testing.assert_array_equal(ep.infos["success"], raw["success"][:-1])
    assert "text" not in data.infos
    # The data/ folder and the file itself are accepted too.
    assert len(read_minari(folder / "data")) == len(read_minari(folder / "data/main_data.hdf5"))


def test_minari_episode_cut_without_a_flag_keeps_its_end(tmp_path):
    episodes = [minari_episode(4, 0), minari_episode(5, 1)]
    episodes[0]["terminations"][:] = False
    data = read_minari(write_minari_fixture(tmp_path / "d", episodes))
    assert data.episode_bounds() == [(0, 4), (4, 9)]


def _edit_episode(key, fn):
    def edit(f):
        node = f[f"episode_1/{key}"]
        value = node[()]
        del f[f"episode_1/{key}"]
        if fn is not None:
            f[f"episode_1/{key}"] = fn(value)

    return edit


BAD_MINARI = {
    "no actions": (_edit_episode("actions", None), "episode_1/actions"),
    "no truncations": (_edit_episode("truncations", None), "episode_1/truncations"),
    "obs not T+1": (
        _edit_episode("observations/observation", lambda v: v[:-1]),
        "episode_1/observations",
    ),
    "short rewards": (_edit_episode("rewards", lambda v: v[:-1]), "episode_1/rewards"),
    "action size": (_edit_episode("actions", lambda v: np.zeros((len(v), 3))), "episode_1"),
}


@pytest.mark.parametrize("case", list(BAD_MINARI))
def test_bad_minari_datasets_name_the_file_and_the_key(tmp_path, case):
    edit, key = BAD_MINARI[case]
    folder = write_minari_fixture(tmp_path / "d", [minari_episode(4, 0), minari_episode(5, 1)])
    with h5py.File(folder / "data/main_data.hdf5", "a") as f:
        edit(f)
    with pytest.raises(InputError, match=rf"main_data.hdf5: .*'{key}"):
        read_minari(folder)


def test_minari_folder_problems(tmp_path):
    with pytest.raises(InputError, match=r"no main_data\.hdf5"):
        read_minari(tmp_path)
    folder = write_minari_fixture(tmp_path / "d", [minari_episode(4, 0)], env_id="Hopper-v5")
    with pytest.raises(InputError, match="observations have 8 columns, Hopper-v5"):
        read_minari(folder)
    with h5py.File(tmp_path / "empty.hdf5", "w"):
        pass
    with pytest.raises(InputError, match="no episode_<i> groups"):
        read_minari(tmp_path / "empty.hdf5")


# ---- normalizers -------------------------------------------------------------------------


def test_limits_normalizer_maps_the_range_to_minus_one_one():
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 20, (200, 3)) * [1, 10, 0.01]
    x[:, 2] = 7.0  # a constant feature: moved to 0, not blown up
    norm = Normalizer.fit("limits", x)
    y = norm.normalize(x)
    np.testing.assert_allclose(y[:, :2].min(0), -1, atol=1e-12)
    np.testing.assert_allclose(y[:, :2].max(0), 1, atol=1e-12)
    np.testing.assert_allclose(y[:, 2], 0, atol=1e-12)
    np.testing.assert_allclose(norm.unnormalize(y), x, atol=1e-12)


def test_gaussian_normalizer_standardises_and_inverts():
    rng = np.random.default_rng(1)
    x = rng.normal([3, -2], [5, 0.1], (500, 2))
    norm = Normalizer.fit("gaussian", x)
    y = norm.normalize(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(0), 1, atol=1e-12)
    np.testing.assert_allclose(norm.unnormalize(y), x, atol=1e-12)


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_normalizer_json_round_trip_and_torch(kind):
    x = np.random.default_rng(2).normal(size=(4, 6, 5)) * 3 + 1
    norm = Normalizer.fit(kind, x)
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(back.normalize(x), norm.normalize(x))
    t = torch.tensor(x, dtype=torch.float64)
    y = back.normalize(t)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
    np.testing.assert_allclose(y.numpy(), norm.normalize(x), atol=1e-12)
    np.testing.assert_allclose(back.unnormalize(y).numpy(), x, atol=1e-12)


@pytest.mark.parametrize(
    ("d", "match"),
    [
        ({"kind": "limits", "scale": [1.0]}, "needs 'kind', 'scale' and 'offset'"),
        ({"kind": "minmax", "scale": [1.0], "offset": [0.0]}, "unknown normalizer kind"),
        ({"kind": "limits", "scale": [1.0, 2.0], "offset": [0.0]}, "equal-length"),
        ({"kind": "limits", "scale": [0.0], "offset": [0.0]}, "non-zero"),
        ({"kind": "limits", "scale": ["a"], "offset": [0.0]}, "not numbers"),
        ([1, 2], "needs 'kind'"),
    ],
)
def test_bad_normalizer_dicts(d, match):
    with pytest.raises(InputError, match=rf"^stats.json: .*{match}"):
        Normalizer.from_dict(d, "stats.json")


def test_unknown_normalizer_kind():
    with pytest.raises(InputError, match="normalizer: unknown kind 'minmax'"):
        Normalizer.fit("minmax", np.zeros((3, 2)))


# ---- training windows --------------------------------------------------------------------


def reference_windows(episode: np.ndarray, horizon, pad_before, pad_after):
    """diffusion_policy's SequenceSampler written out as a loop: copy the part of the window
    inside the episode, repeat its first / last entry into the padding."""
    length, out = len(episode), []
    for idx in range(-pad_before, length - horizon + pad_after + 1):
        start, stop = max(idx, 0), min(idx + horizon, length)
        window = episode[start:stop]
        before, after = start - idx, horizon - (start - idx) - (stop - start)
        out.append(np.concatenate([window[:1]] * before + [window] + [window[-1:]] * after))
    return out


@pytest.mark.parametrize(("horizon", "n_obs", "n_act"), [(16, 2, 8), (4, 1, 1), (6, 3, 4)])
def test_windows_match_the_diffusion_policy_sampler(horizon, n_obs, n_act):
    data = make_data((20, 7, 13))
    windows = SequenceWindows(data, horizon, n_obs, n_act, keys=("observations", "actions"))
    expected = [
        w
        for ep in data.episodes()
        for w in reference_windows(ep.actions, horizon, n_obs - 1, n_act - 1)
    ]
    assert len(windows) == len(expected)
    for i, w in enumerate(expected):
        np.testing.assert_array_equal(windows[i]["actions"], w)
    batch = windows.batch([0, len(windows) - 1])
    assert batch["observations"].shape == (2, horizon, OBS)
    np.testing.assert_array_equal(batch["actions"][1], expected[-1])


def test_windows_never_cross_episodes():
    data = make_data((5, 9))
    data.actions[:, 0] = np.repeat([0.0, 1.0], [5, 9])  # episode id in the first action entry
    windows = SequenceWindows(data, 4, 2, 2)
    batch = windows.batch(np.arange(len(windows)))["actions"][..., 0]
    assert ((batch == 0) | (batch == 1)).all() and (batch.min(1) == batch.max(1)).all()
    # The current observation (position To - 1) runs from each episode's first step on, up to
    # where the window still holds Ta actions: idx in [-(To - 1), L - H + Ta - 1].
    current = windows.index[:, 1]
    assert current.tolist() == [0, 1, 2, 3, *range(5, 13)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon": 0}, "horizon must be a positive integer"),
        ({"horizon": 4, "n_obs_steps": 2, "n_action_steps": 4}, "horizon: 4 is shorter"),
        ({"horizon": 4, "n_action_steps": 1.5}, "n_action_steps must be"),
        ({"horizon": 6}, "horizon: no window of 6 steps fits"),
        ({"horizon": 4, "keys": ("observations", "values")}, r"keys: \['values'\]"),
    ],
)
def test_bad_window_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        SequenceWindows(make_data((5, 3, 4)), **kwargs)


# ---- D4RL reference scores ---------------------------------------------------------------


def test_normalized_scores():
    assert normalized_score("hopper-medium-v2", 3234.3) == pytest.approx(1.0)
    assert normalized_score("walker2d-medium-replay-v2", 1.629008) == pytest.approx(0.0)
    # Diffuser's maze2d-large 123.0 return is normalized 0.435 (x100: 43.5) with these bounds.
    assert normalized_score("maze2d-large-v1", 123.0) == pytest.approx((123.0 - 6.7) / 267.29)
    assert normalized_score("antmaze-umaze-v2", 0.75) == 0.75
    assert reference_scores("Hopper-v5")[2] and not reference_scores("hopper-expert-v2")[2]
    for task in ("pong-v0", "maze2d-umaze-dense-v1"):
        with pytest.raises(InputError, match="task: no D4RL reference scores"):
            normalized_score(task, 1.0)
