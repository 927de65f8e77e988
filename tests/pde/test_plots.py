"""Space-time heat maps are written as PNG files; mismatched panels are refused."""

import numpy as np
import pytest
import torch

from polydiff.core.errors import InputError
from polydiff.pde.data import BurgersConfig, generate_burgers
from polydiff.pde.plots import plot_space_time


def test_heat_maps_of_truth_prediction_and_error(tmp_path):
    data = generate_burgers(1, BurgersConfig(nx=16, nt=8, t_end=0.5), seed=0)
    truth = torch.from_numpy(data.u[0])
    panels = {"truth": truth, "prediction": truth + 0.1, "forcing": data.f[0]}
    path = plot_space_time(tmp_path / "maps.png", panels, data.x, data.t, title="Burgers")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    with pytest.raises(InputError, match=r"^panels: 'bad' has shape \(8, 4\)"):
        plot_space_time(tmp_path / "bad.png", {"bad": np.zeros((8, 4))}, data.x, data.t)
    assert not (tmp_path / "bad.png").exists()
