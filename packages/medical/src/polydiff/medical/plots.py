"""Figures of volumes (matplotlib, imported lazily: polydiff-medical does not install it)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

AXES = ("axial", "coronal", "sagittal")


def plot_centre_slices(
    path: str | Path, columns: dict[str, Tensor], titles: dict[str, str]
) -> None:
    """A PNG montage: rows are the axial / coronal / sagittal centre slices, columns the
    ``(D, H, W)`` volumes in [0, 1] (gray, clipped), each headed by its name and ``titles``'s
    extra line (e.g. its PSNR)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_centre_slices needs matplotlib: pip install matplotlib") from None
    from polydiff.core.io import atomic_path

    fig, axes = plt.subplots(3, len(columns), figsize=(2.2 * len(columns), 6.6), squeeze=False)
    for row, axis_name in enumerate(AXES):
        for col, (label, vol) in enumerate(columns.items()):
            ax = axes[row, col]
            img = vol.movedim(row, 0)[vol.shape[row] // 2]
            ax.imshow(img.detach().cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                extra = f"\n{titles[label]}" if label in titles else ""
                ax.set_title(f"{label}{extra}", fontsize=9)
            if col == 0:
                ax.set_ylabel(axis_name, fontsize=9)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


__all__ = ["plot_centre_slices"]
