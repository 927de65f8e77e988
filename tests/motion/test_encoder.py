"""FID and diversity: the Frechet formula against closed forms, the shipped encoder's FID of a
set against itself, held-out data, shuffled frames and noise, and the encoder's save/load."""

import math

import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.motion.data import ACTIONS, STYLES, generate_corpus
from polydiff.motion.encoder import (
    EncoderConfig,
    MotionEncoder,
    embed,
    feature_metrics,
    load_encoder,
    position_windows,
    save_encoder,
    train_encoder,
)
from polydiff.motion.features import FeatureLayout, motion_to_features, position_features
from polydiff.motion.metrics import diversity


def test_diversity_estimates_the_pair_distance():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    # |x - y| for x, y ~ N(0, I_3) independent: sqrt(2) times a chi(3) mean, 2 sqrt(2 / pi) sqrt(2)
    expected = math.sqrt(2) * 2 * math.sqrt(2 / math.pi)
    assert diversity(a, pairs=20000) == pytest.approx(expected, rel=0.03)
    assert diversity(torch.ones(5, 3)) == 0.0


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: diversity(torch.zeros(1, 3)), "diversity needs at least 2"),
        (lambda: load_encoder("/nonexistent-folder"), "not a motion encoder"),
    ],
)
def test_bad_input(call, needle):
    with pytest.raises(InputError, match=needle):
        call()


def test_position_features_are_the_features_without_rotations():
    clip = generate_corpus(1, seconds=1.0, actions=("walk",), styles=("neutral",))[0]
    full = motion_to_features(clip.positions, clip.rotations)
    rot6d = FeatureLayout(22).rot6d
    without = torch.cat([full[..., : rot6d.start], full[..., rot6d.stop :]], -1)
    assert torch.equal(position_features(clip.positions), without)
    assert without.shape[-1] == EncoderConfig().input_dim == 137


@pytest.fixture(scope="module")
def windows():
    """Held-out clips (another seed than the encoder's training corpus), 2 s windows."""
    clips = generate_corpus(1, seconds=4.0, seed=7)
    return position_windows([c.positions for c in clips], 41, 20)


def test_shipped_encoder_fid_is_zero_on_itself_and_grows_with_damage(windows):
    encoder = load_encoder()
    real = position_windows([c.positions for c in generate_corpus(1, seconds=4.0, seed=8)], 41, 20)
    same = feature_metrics(encoder, windows, windows)
    assert same["fid"] < 1e-3 and same["diversity"] == same["reference_diversity"] > 0
    held_out = feature_metrics(encoder, real, windows)["fid"]
    g = torch.Generator().manual_seed(0)
    shuffled = [w[torch.randperm(len(w), generator=g)] for w in real]
    noised = [w + 0.02 * torch.randn(w.shape, generator=g, dtype=w.dtype) for w in real]
    assert feature_metrics(encoder, shuffled, windows)["fid"] > 10 * held_out
    assert feature_metrics(encoder, noised, windows)["fid"] > 3 * held_out
    # held-out clips are mostly classified as what they are
    clips = generate_corpus(1, seconds=2.05, seed=9)
    features = position_features(torch.stack([c.positions for c in clips])).float()
    _, action, style = encoder(features)
    assert (action.argmax(-1) == torch.tensor([ACTIONS.index(c.action) for c in clips])).sum() >= 18
    assert (style.argmax(-1) == torch.tensor([STYLES.index(c.style) for c in clips])).sum() >= 18


def test_training_saving_and_loading_a_tiny_encoder(tmp_path, windows):
    clips = generate_corpus(1, seconds=2.5, seed=0, actions=("walk", "run"))
    config = EncoderConfig(width=8, embed_dim=4, layers=1)
    encoder = train_encoder(clips, tmp_path / "run", config=config, frames=21, max_steps=3)
    again = load_encoder(tmp_path / "run" / "encoder")
    assert torch.equal(embed(again, windows), embed(encoder, windows))
    assert embed(again, windows).shape == (len(windows), 4)
    save_encoder(MotionEncoder(config), tmp_path / "fresh")
    assert load_encoder(tmp_path / "fresh").config == config
