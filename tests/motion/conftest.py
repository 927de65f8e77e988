"""Shared fixtures of the motion model tests."""

import pytest

from polydiff.motion.data import MotionDataset, generate_corpus


@pytest.fixture(scope="module")
def dataset():
    """Tiny training windows: one clip per action and style, 16 frames every 8."""
    return MotionDataset(generate_corpus(1, seconds=2.5, seed=0), window=16, stride=8)
