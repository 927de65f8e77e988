"""The text networks plug into the core's discrete samplers (the sampler recipes come later)."""

from __future__ import annotations

import pytest
import torch

from polydiff.core.discrete import MaskedDiffusion
from polydiff.core.sample import sample
from polydiff.text.nets import DiffusionTransformer, TransformerConfig

V, L = 8, 10


@pytest.mark.parametrize(
    ("solver", "conditioning"),
    [("mdlm", "adaln"), ("mdlm_cached", "none"), ("first_hitting", "add"), ("remdm", "adaln")],
)
def test_denoiser_samples_through_the_core(solver, conditioning):
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=V, d_model=32, n_layers=1, n_heads=2, time_conditioning=conditioning
    )
    model = DiffusionTransformer(config).eval()
    path = MaskedDiffusion(V, mask_index=V - 1)  # the mask token inside the vocabulary
    with torch.no_grad():
        x, state = sample(
            model,
            path.prior((3, L)),
            path=path,
            solver=solver,
            steps=L,
            prediction="logits",
            grid="uniform",
            generator=torch.Generator().manual_seed(0),
            return_state=True,
        )
    assert x.shape == (3, L) and x.dtype == torch.long
    assert ((x >= 0) & (x < V - 1)).all()  # fully unmasked, SUBS never emits the mask
    assert (state.nfe <= L + 1).all()
