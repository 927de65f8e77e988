"""The animated stick figure: one GIF frame per pose, and the figure moves."""

import numpy as np
from PIL import Image

from polydiff.motion.data import generate_clip
from polydiff.motion.render import animate


def test_animate_writes_one_gif_frame_per_pose(tmp_path):
    clip = generate_clip("run", seconds=0.5, seed=0)  # 10 frames, each pose different
    path = animate(clip.positions[::2], tmp_path / "run.gif", fps=10, size=2.0, dpi=40)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5 and gif.size == (80, 80)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(4)
        last = np.asarray(gif.convert("RGB"))
    assert (first != last).any()
    assert [p.name for p in tmp_path.iterdir()] == ["run.gif"]  # no temporary file left
