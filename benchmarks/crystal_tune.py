"""CrysBFN loss variants on validation data only (perov-5 `val`): which coordinate loss to ship.

Each variant trains a CSPNet (hidden 128, 3 layers, 32 frequencies; AdamW 1e-3, batch 128,
gradient clipping 1.0, EMA 0.995, torch seed 0) for `--steps` steps on the first 3287 rows of
perov-5 `val.csv`, then predicts (N = 10, flow seeds 0 and 1) the next 200 rows (held out) and
prints their match rates beside the random-coordinate baseline. Variants: `elbo` (CrysBFN's
N-step loss as published), `inv_elbo` (its error taken up to a global shift per crystal: the
shipped default), `inv_flat` (shift invariant, every step weighted by the mean N-step weight).
The test split is not read. Run: `OMP_NUM_THREADS=1 python benchmarks/run.py crystal_tune
[--data <folder with perov_5/>] [--steps 1000] [--variants elbo inv_elbo]` (about 4 CPU-minutes
per variant at 1000 steps).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "elbo": {"shift_invariant": False},
    "inv_elbo": {"shift_invariant": True},
    "inv_flat": {"shift_invariant": True, "coord_weights": "flat"},
}
TRAIN_ROWS, HELD_OUT = 3287, 200


def run_variant(name: str, data: Path, steps: int) -> dict:
    from torch_geometric.loader import DataLoader

    from polydiff.core.train import make_ema, update_ema
    from polydiff.crystal.crysbfn import CrysBFN, config_for
    from polydiff.crystal.data import read_csv, to_graphs
    from polydiff.crystal.metrics import csp_match, random_coordinates

    torch.manual_seed(0)
    rows = read_csv(data / "perov_5" / "val.csv")
    train, held = rows[:TRAIN_ROWS], rows[TRAIN_ROWS : TRAIN_ROWS + HELD_OUT]
    options = {"hidden": 128, "layers": 3, "n_freq": 32, **VARIANTS[name]}
    method = CrysBFN(config_for(rows, **options))
    graphs = to_graphs(train, method.vocab)
    loader = DataLoader(graphs, batch_size=128, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(method.net.parameters(), lr=1e-3)
    ema, step, start = make_ema(method.net), 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            loss = method.loss_fn(method.net, batch)["loss"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(method.net.parameters(), 1.0)
            opt.step()
            update_ema(ema, method.net, 0.995)
            step += 1
            if step >= steps:
                break
    method.net = ema
    rates = []
    for seed in (0, 1):
        predicted = method.predict(held, generator=torch.Generator().manual_seed(seed))
        rates.append(csp_match(predicted, held).match_rate)
    base = csp_match(random_coordinates(held, torch.Generator().manual_seed(0)), held)
    return {
        "variant": name,
        "steps": steps,
        "match_rate_seeds_0_1": rates,
        "random_coordinates": base.match_rate,
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py crystal_tune", description=__doc__)
    default = ROOT.parent / "shared" / "data" / "crystal"
    parser.add_argument("--data", type=Path, default=default, help="folder with perov_5/")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.variants:
        print(json.dumps(run_variant(name, args.data, args.steps)), flush=True)
    return 0
