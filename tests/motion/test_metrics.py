"""Plausibility metrics on constructed motions with known answers."""

import pytest
import torch

from polydiff.motion.metrics import floor_penetration, foot_skating_ratio, jerk
from polydiff.motion.skeleton import smpl22


def standing(frames=21):
    return smpl22().rest_positions().expand(frames, 22, 3).clone()


def test_planted_feet_do_not_skate():
    assert foot_skating_ratio(standing()) == 0.0


def test_sliding_the_whole_body_on_the_floor_skates_every_frame():
    positions = standing()
    positions[..., 0] += 0.02 * torch.arange(21, dtype=torch.float64)[:, None]
    assert foot_skating_ratio(positions) == 1.0


def test_sliding_one_foot_half_the_time_gives_one_half():
    positions = standing()  # 20 transitions; the right toe slides in the first 10
    positions[:11, 11, 2] += 0.03 * torch.arange(11, dtype=torch.float64)
    positions[11:, 11, 2] = positions[10, 11, 2]
    assert foot_skating_ratio(positions) == pytest.approx(0.5)


def test_slow_creep_and_moving_lifted_feet_are_not_skating():
    positions = standing()
    positions[..., 0] += 0.005 * torch.arange(21, dtype=torch.float64)[:, None]  # below 0.01
    assert foot_skating_ratio(positions) == 0.0
    lifted = standing()
    lifted[..., 1] += 0.3
    lifted[..., 0] += 0.05 * torch.arange(21, dtype=torch.float64)[:, None]
    assert foot_skating_ratio(lifted) == 0.0


def test_floor_penetration_is_the_mean_depth_below_the_floor():
    positions = standing(frames=10)
    assert floor_penetration(positions) == 0.0
    positions[:5, 10, 1] = -0.03  # 3 cm under the floor in half the frames
    assert floor_penetration(positions) == pytest.approx(0.015)


def test_jerk_of_a_cubic_is_six_times_its_coefficient():
    fps = 20.0
    t = torch.arange(30, dtype=torch.float64) / fps
    positions = standing(frames=30)
    assert jerk(positions, fps) == pytest.approx(0.0, abs=1e-9)
    positions[..., 0] += 0.5 * t[:, None] ** 3 + 2.0 * t[:, None]
    assert jerk(positions, fps) == pytest.approx(3.0, rel=1e-6)


def test_metrics_batch_over_clips():
    clips = torch.stack([standing(), standing()])
    clips[1, :, :, 0] += 0.02 * torch.arange(21, dtype=torch.float64)[:, None]
    assert foot_skating_ratio(clips).tolist() == [0.0, 1.0]
    assert jerk(clips, 20.0).shape == (2,) and floor_penetration(clips).shape == (2,)
