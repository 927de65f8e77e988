"""The gen-PPL vs entropy frontier, its plot, and throughput, on hand-checkable cases."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from polydiff.text.evaluation import (
    FrontierPoint,
    frontier_at_entropy,
    frontier_sweep,
    held_out_entropy,
    plot_frontier,
    throughput,
)
from polydiff.text.sampling import SampleResult

V = 5


def uniform_reference(ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*ids.shape, V)


def peaked_reference(ids: torch.Tensor) -> torch.Tensor:
    """Predicts token 0 with probability 0.9 after anything."""
    p = torch.full((V,), 0.1 / (V - 1))
    p[0] = 0.9
    return torch.log(p).expand(*ids.shape, V)


def fake_sampler(temperature: float, top_p: float) -> SampleResult:
    """Low temperature -> a repeated token (entropy 0); T = 1 -> two tokens alternating."""
    if temperature < 1:
        tokens = torch.zeros(4, 8, dtype=torch.long)
    else:
        tokens = torch.tensor([[0, 1] * 4] * 4)
    return SampleResult(tokens, network_calls=3, nfe=3.0, seconds=0.5)


def test_frontier_points_have_hand_computed_gen_ppl_and_entropy():
    points = frontier_sweep(fake_sampler, uniform_reference, temperatures=(0.5, 1.0))
    assert [p.temperature for p in points] == [0.5, 1.0]
    assert all(p.gen_ppl == pytest.approx(V) for p in points)  # uniform reference
    assert points[0].entropy == 0.0 and points[1].entropy == pytest.approx(math.log(2))
    assert points[0].nfe == 3.0 and points[0].tokens_per_second == pytest.approx(64)
    # under a peaked reference the repetitive samples get the low gen-PPL: why entropy matters
    peaked = frontier_sweep(fake_sampler, peaked_reference, temperatures=(0.5, 1.0))
    assert peaked[0].gen_ppl == pytest.approx(1 / 0.9)
    assert peaked[1].gen_ppl > 5 * peaked[0].gen_ppl
    sweep = frontier_sweep(fake_sampler, uniform_reference, temperatures=(1.0,), top_ps=(0.9, 1.0))
    assert [(p.temperature, p.top_p) for p in sweep] == [(1.0, 0.9), (1.0, 1.0)]
    with pytest.raises(ValueError, match="at least one temperature"):
        frontier_sweep(fake_sampler, uniform_reference, temperatures=())


def test_frontier_rejects_unfinished_samples():
    def masked(temperature, top_p):
        return SampleResult(torch.full((2, 4), 4), 1, 1.0, 0.1)

    with pytest.raises(ValueError, match="mask token"):
        frontier_sweep(masked, uniform_reference, temperatures=(1.0,), mask_id=4)


def test_plot_frontier_writes_an_image(tmp_path):
    points = frontier_sweep(fake_sampler, peaked_reference, temperatures=(0.5, 1.0))
    other = [FrontierPoint(1.0, 0.9, 3.0, 0.4, 8.0, 100.0)]
    out = plot_frontier({"ancestral": points, "arpc": other}, tmp_path / "frontier.png",
                        reference_entropy=0.6)  # fmt: skip
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert not list(tmp_path.glob(".*tmp"))  # written atomically, nothing left behind
    with pytest.raises(ValueError, match="no points"):
        plot_frontier({"empty": []}, tmp_path / "x.png")


@pytest.mark.parametrize(("low", "high"), [(16.0, 18.0), (2.5, 3.1), (40.0, 900.0), (1.0, 1e4)])
def test_a_log_axis_has_labelled_ticks_inside_the_data(low, high):
    """Issue 14 item 7: points at 16-18 got labels only at 10 (outside the data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from polydiff.text.evaluation import readable_log_ticks

    fig, ax = plt.subplots()
    ax.plot([0, 1], [low, high])
    ax.set_yscale("log")
    readable_log_ticks(ax.yaxis, [low, high])
    fig.canvas.draw()
    inside = [t for t in ax.yaxis.get_majorticklabels()
              if t.get_text() and low * 0.99 <= t.get_position()[1] <= high * 1.01]  # fmt: skip
    plt.close(fig)
    assert len(inside) >= 2


def test_plot_frontier_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        plot_frontier({"a": [FrontierPoint(1, 1, 2, 1, 1, 1)]}, tmp_path / "f.png")


def test_throughput_and_held_out_entropy():
    stats = throughput(lambda: fake_sampler(1.0, 1.0), repeats=3)
    assert stats["tokens_per_second"] == pytest.approx(32 / 0.5)
    assert stats["nfe"] == 3.0 and stats["network_calls"] == 3 and stats["seconds"] == 0.5
    assert held_out_entropy(torch.tensor([[0, 1, 2, 3]])) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="repeats"):
        throughput(lambda: fake_sampler(1.0, 1.0), repeats=0)


def test_frontier_at_entropy_interpolates_log_gen_ppl_and_temperature():
    pts = [
        {"temperature": 0.9, "entropy": 3.0, "gen_ppl": 10.0},
        {"temperature": 1.0, "entropy": 3.2, "gen_ppl": 40.0},
        {"temperature": 1.1, "entropy": 3.4, "gen_ppl": 90.0},
    ]
    mid = frontier_at_entropy(pts, 3.1)  # halfway between the first two: geometric mean
    assert mid["gen_ppl"] == pytest.approx(20.0)
    assert mid["temperature"] == pytest.approx(0.95)
    assert mid["extrapolation"] == 0.0
    upper = frontier_at_entropy(list(reversed(pts)), 3.3)  # the bracketing segment, any order
    assert upper["gen_ppl"] == pytest.approx(60.0)
    beyond = frontier_at_entropy(pts, 3.5)  # extends the last segment, and says how far
    assert beyond["gen_ppl"] == pytest.approx(90.0 * (90.0 / 40.0) ** 0.5)
    assert beyond["extrapolation"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="two or more distinct entropies"):
        frontier_at_entropy(pts[:1], 3.0)
