"""The procedural corpus: labels, determinism, planted feet, and the windowed feature Dataset."""

import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.data import (
    ACTIONS,
    STYLES,
    MotionDataset,
    action_index,
    clips_from_bvh,
    generate_clip,
    generate_corpus,
)
from polydiff.motion.features import canonicalize, features_to_positions
from polydiff.motion.io import write_bvh
from polydiff.motion.metrics import floor_penetration, foot_skating_ratio
from polydiff.motion.skeleton import PARENTS, smpl22


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(1, seconds=3.0, seed=4)


def test_every_action_and_style_is_generated_with_its_labels(corpus):
    assert len(corpus) == len(ACTIONS) * len(STYLES)
    assert {(c.action, c.style) for c in corpus} == {(a, s) for a in ACTIONS for s in STYLES}
    assert all(c.positions.shape == (60, 22, 3) for c in corpus)


def test_clips_are_deterministic_by_seed():
    first = generate_clip("walk", "tired", seconds=2.0, seed=3)
    assert torch.equal(
        first.positions, generate_clip("walk", "tired", seconds=2.0, seed=3).positions
    )
    assert not torch.allclose(
        first.positions, generate_clip("walk", "tired", seconds=2.0, seed=4).positions
    )


def test_feet_stay_planted_and_above_the_floor(corpus):
    for clip in corpus:
        assert foot_skating_ratio(clip.positions) == 0.0, (clip.action, clip.style)
        assert floor_penetration(clip.positions) == 0.0
        assert clip.positions[..., [7, 8, 10, 11], 1].amin() == pytest.approx(0.01, abs=1e-9)


def test_bones_keep_their_lengths(corpus):
    lengths = smpl22().offsets[1:].norm(dim=-1)
    for clip in corpus:
        bones = clip.positions[:, 1:] - clip.positions[:, list(PARENTS[1:])]
        assert torch.allclose(bones.norm(dim=-1), lengths.expand(60, 21))


def test_gaits_lift_their_feet_and_move_at_their_speed(corpus):
    def speed(clip):
        return (clip.positions[-1, 0, [0, 2]] - clip.positions[0, 0, [0, 2]]).norm() / 3.0

    by_label = {(c.action, c.style): c for c in corpus}
    for action in ("walk", "run", "sidestep", "backward", "turn"):
        clip = by_label[(action, "neutral")]
        assert clip.positions[:, 10, 1].max() > 0.08  # the left toe leaves the floor
    assert speed(by_label[("idle", "neutral")]) < 0.05
    assert speed(by_label[("walk", "tired")]) < speed(by_label[("walk", "neutral")])
    assert speed(by_label[("walk", "neutral")]) < speed(by_label[("run", "neutral")])
    jump = by_label[("jump", "neutral")].positions
    assert jump[:, [7, 8], 1].amin(-1).max() > 0.15  # both feet in the air at once


def test_clips_from_a_bvh_folder_are_resampled_to_20_fps(tmp_path):
    fast = generate_clip("run", "energetic", seconds=2.0, fps=40.0, seed=6)
    write_bvh(tmp_path / "run.bvh", fast.motion())
    (clip,) = clips_from_bvh(sorted(tmp_path.glob("*.bvh")), "run", "energetic")
    expected = generate_clip("run", "energetic", seconds=2.0, fps=20.0, seed=6)
    assert clip.fps == 20.0 and clip.positions.shape == (40, 22, 3)
    assert torch.allclose(clip.positions, expected.positions, atol=1e-9)
    with pytest.raises(InputError, match="action: unknown label"):
        clips_from_bvh([tmp_path / "run.bvh"], "dance")


def test_unknown_labels_are_input_errors():
    with pytest.raises(InputError, match="action: unknown label 'dance'"):
        generate_clip("dance")
    with pytest.raises(InputError, match="style: unknown label 'sad'"):
        generate_clip("walk", "sad")
    assert action_index("run") == ACTIONS.index("run")


def test_dataset_windows_are_normalised_features(corpus):
    dataset = MotionDataset(corpus, window=20, stride=20)
    assert len(dataset) == len(corpus) * 2  # 59 feature frames -> windows at 0 and 20
    item = dataset[3]
    assert item["x"].shape == (20, 263) and item["x"].dtype == torch.float32
    assert item["action"] == ACTIONS.index(corpus[1].action)
    flat = dataset.features.reshape(-1, 263).double()
    varying = dataset.normalizer.std > 1e-2
    assert torch.allclose(flat.mean(0), torch.zeros(263, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(flat.std(0)[varying], torch.ones(int(varying.sum()), dtype=torch.float64))
    raw = dataset.normalizer.denormalize(dataset.features[0].double())
    positions = features_to_positions(raw)
    assert torch.allclose(positions, canonicalize(corpus[0].positions)[:20], atol=1e-5)


def test_dataset_refuses_clips_shorter_than_a_window(corpus):
    with pytest.raises(InputError, match="window"):
        MotionDataset(corpus[:1], window=80)


def test_corpus_folder_round_trip_and_its_labels(tmp_path):
    from polydiff.motion.data import corpus_labels, label_counts, read_corpus, write_corpus

    clips = generate_corpus(1, seconds=0.5, actions=("walk", "jump"), styles=("tired",))
    assert write_corpus(clips, tmp_path) == {"walk/tired": 1, "jump/tired": 1}
    read = read_corpus(tmp_path)
    assert label_counts(read) == {"walk/tired": 1, "jump/tired": 1}  # in ACTIONS order
    for clip, original in zip(read, sorted(clips, key=lambda c: c.action), strict=True):
        assert torch.allclose(clip.positions, original.positions, atol=1e-9)
    (tmp_path / "walk" / "tired" / "walk_tired_000.bvh").rename(tmp_path / "walk" / "take.bvh")
    assert [label[1:] for label in corpus_labels(tmp_path)] == [
        ("jump", "tired"),
        ("walk", "neutral"),
    ]
    (tmp_path / "dance").mkdir()
    (tmp_path / "walk" / "take.bvh").rename(tmp_path / "dance" / "take.bvh")
    with pytest.raises(InputError, match=r"dance.take\.bvh: unknown action folder 'dance'"):
        corpus_labels(tmp_path)
