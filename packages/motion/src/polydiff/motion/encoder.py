"""A motion encoder for evaluation: FID and diversity in its feature space.

As in the action-to-motion evaluations of ACTOR and MDM (a motion classifier trained on the
data's action labels; its penultimate layer is the feature space of FID and diversity), a small
temporal convolution network is trained to classify the action and style of windows of the
built-in corpus. Its input is `position_features` (the 263-d features without the rotations:
root velocities and height, root-relative joints, joint velocities, foot contacts), so a clip
and its positions put on another skeleton by IK get the same features. The embedding is the
mean over time of the last convolution layer, mapped to ``embed_dim`` numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polydiff.core import Config
from polydiff.core.errors import InputError
from polydiff.core.metrics import fid
from polydiff.motion.data import ACTIONS, STYLES, Clip
from polydiff.motion.features import FeatureLayout, position_features
from polydiff.motion.metrics import diversity

FORMAT = "polydiff-motion-encoder"
SHIPPED = "encoder-procedural"  # the checkpoint under polydiff/motion/checkpoints/


@dataclass
class EncoderConfig(Config):
    n_joints: int = 22
    width: int = 64  # channels of the temporal convolutions
    embed_dim: int = 64  # size of the feature vectors of FID and diversity
    layers: int = 3  # convolutions, dilated 1, 2, 4, ...
    kernel: int = 5
    n_actions: int = len(ACTIONS)
    n_styles: int = len(STYLES)

    @property
    def input_dim(self) -> int:
        layout = FeatureLayout(self.n_joints)
        return layout.dim - (layout.rot6d.stop - layout.rot6d.start)


class MotionEncoder(nn.Module):
    """Position features ``[B, T, 137]`` (raw; normalised inside with the stored mean and std)
    to embeddings ``[B, embed_dim]`` and action / style logits."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = config.input_dim
        for k in range(config.layers):
            dilation = 2**k
            padding = dilation * (config.kernel // 2)
            layers += [nn.Conv1d(channels, config.width, config.kernel, 1, padding, dilation)]
            layers.append(nn.GELU())
            channels = config.width
        self.convs = nn.Sequential(*layers)
        self.embed = nn.Linear(config.width, config.embed_dim)
        self.action_head = nn.Linear(config.embed_dim, config.n_actions)
        self.style_head = nn.Linear(config.embed_dim, config.n_styles)
        self.register_buffer("mean", torch.zeros(config.input_dim))
        self.register_buffer("std", torch.ones(config.input_dim))

    def embedding(self, features: Tensor) -> Tensor:
        x = (features - self.mean) / self.std
        return self.embed(self.convs(x.transpose(1, 2)).mean(-1))

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = self.embedding(features)
        return z, self.action_head(z), self.style_head(z)


def position_windows(positions: Sequence[Tensor], frames: int, stride: int) -> list[Tensor]:
    """Windows of ``frames`` position frames every ``stride`` frames of each clip ``[T, J, 3]``
    (a clip shorter than ``frames`` gives none)."""
    return [
        clip[start : start + frames]
        for clip in positions
        for start in range(0, len(clip) - frames + 1, stride)
    ]


def _labelled_windows(clips: Sequence[Clip], frames: int, stride: int) -> dict[str, Tensor]:
    features, actions, styles = [], [], []
    for clip in clips:
        windows = position_windows([clip.positions], frames, stride)
        features += [position_features(w).float() for w in windows]
        actions += [ACTIONS.index(clip.action)] * len(windows)
        styles += [STYLES.index(clip.style)] * len(windows)
    if not features:
        raise InputError(f"window: no clip has {frames} frames")
    return {
        "x": torch.stack(features),
        "action": torch.tensor(actions),
        "style": torch.tensor(styles),
    }


class _Windows(torch.utils.data.Dataset):
    def __init__(self, data: dict[str, Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["x"])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self.data.items()}


def classification_loss(net: MotionEncoder, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Cross-entropy of the action and style heads, with their accuracies (logged)."""
    _, action, style = net(batch["x"])
    losses = {
        "action": F.cross_entropy(action, batch["action"]),
        "style": F.cross_entropy(style, batch["style"]),
        "action_accuracy": (action.argmax(-1) == batch["action"]).float().mean().detach(),
    }
    losses["loss"] = losses["action"] + losses["style"]
    return losses


def train_encoder(
    clips: Sequence[Clip],
    run_dir: str | Path,
    *,
    config: EncoderConfig | None = None,
    frames: int = 41,
    stride: int = 5,
    max_steps: int = 1500,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    **fit_kwargs: Any,
) -> MotionEncoder:
    """Train a `MotionEncoder` to classify action and style of windows of ``frames`` position
    frames cut every ``stride`` frames from labelled ``clips``, with the core's `DiffusionModule`
    (AdamW, EMA) and `fit` in ``run_dir`` (resumable); exports the EMA weights to
    ``run_dir/encoder`` and returns them."""
    from polydiff.core.train import DiffusionModule, ResumableLoader, fit

    data = _labelled_windows(clips, frames, stride)
    torch.manual_seed(seed)
    net = MotionEncoder(config or EncoderConfig())
    flat = data["x"].reshape(-1, data["x"].shape[-1])
    net.mean.copy_(flat.mean(0))
    net.std.copy_(flat.std(0).clamp_min(1e-2))
    module = DiffusionModule(net, classification_loss, lr=lr, ema_decay=0.99, ema_warmup=True)
    dataset = _Windows(data)
    loader = ResumableLoader(dataset, batch_size=min(batch_size, len(dataset)), seed=seed)
    fit_kwargs.setdefault("progress_bar", False)
    fit(module, loader, run_dir, max_steps=max_steps, seed=seed, **fit_kwargs)
    encoder = module.eval_net.eval()
    save_encoder(encoder, Path(run_dir) / "encoder")
    return encoder


def save_encoder(encoder: MotionEncoder, folder: str | Path) -> Path:
    """``model.safetensors`` + ``config.json`` (format ``polydiff-motion-encoder``)."""
    from polydiff.core.train import export

    return export(encoder, folder, {"format": FORMAT, "config": encoder.config.to_dict()})


def load_encoder(folder: str | Path | None = None) -> MotionEncoder:
    """A saved encoder (None: the shipped one); a folder that holds none is an InputError."""
    from polydiff.core.train import load_config, load_weights

    folder = Path(__file__).parent / "checkpoints" / SHIPPED if folder is None else Path(folder)
    try:
        saved = load_config(folder)
    except (FileNotFoundError, ValueError) as error:
        raise InputError(f"{folder}: not a motion encoder ({error})") from None
    if saved.get("format") != FORMAT:
        raise InputError(f"{folder}: not a motion encoder (format {saved.get('format')!r})")
    encoder = MotionEncoder(EncoderConfig.from_dict(saved["config"], source=str(folder)))
    return load_weights(folder, encoder).eval()


@torch.no_grad()
def embed(encoder: MotionEncoder, positions: Sequence[Tensor] | Tensor) -> Tensor:
    """Embeddings ``[N, embed_dim]`` of clips of joint positions (each ``[T, J, 3]``, at least 2
    frames, 20 fps); clips of equal length are encoded together."""
    clips = list(positions)
    out: list[Tensor | None] = [None] * len(clips)
    by_length: dict[int, list[int]] = {}
    for k, clip in enumerate(clips):
        if clip.ndim != 3 or len(clip) < 2:
            raise InputError(f"positions: clip {k} must be [T >= 2, J, 3], got {clip.shape}")
        by_length.setdefault(len(clip), []).append(k)
    for indices in by_length.values():
        features = position_features(torch.stack([clips[k] for k in indices]).double())
        for k, z in zip(indices, encoder.embedding(features.float())):
            out[k] = z
    return torch.stack(out)


def feature_metrics(
    encoder: MotionEncoder,
    positions: Sequence[Tensor] | Tensor,
    reference: Sequence[Tensor] | Tensor,
    *,
    pairs: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """FID of clips against reference clips and the diversity of both, in the encoder's
    feature space (MDM's action-to-motion protocol)."""
    features, real = embed(encoder, positions), embed(encoder, reference)
    return {
        "fid": fid(features, real),
        "diversity": diversity(features, pairs=pairs, seed=seed),
        "reference_diversity": diversity(real, pairs=pairs, seed=seed),
    }


__all__ = [
    "EncoderConfig",
    "MotionEncoder",
    "classification_loss",
    "embed",
    "feature_metrics",
    "load_encoder",
    "position_windows",
    "save_encoder",
    "train_encoder",
]
