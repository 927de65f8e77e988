"""polydiff.crystal.workflow: the one-call functions behind `polydiff crystal ...` (the verbs
themselves are tested end to end in tests/apps/test_crystal_cli.py)."""

from __future__ import annotations

import pytest
import torch
from pymatgen.core import Lattice, Structure

from polydiff.core.errors import InputError
from polydiff.crystal.data import read_crystals, write_cifs, write_csv
from polydiff.crystal.workflow import (
    TrainRecipe,
    build_method,
    check_output,
    evaluate,
    load_model,
    read_structures,
    sample_structures,
    shipped_models,
)


def _crystals():
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    perovskite = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"], coords)
    rock_salt = Structure(Lattice.cubic(2.9), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return read_crystals([perovskite, rock_salt, perovskite], ["a", "b", "c"])


def test_read_structures_from_a_csv_a_cif_folder_or_nowhere(tmp_path):
    crystals = _crystals()
    write_csv(crystals, tmp_path / "set.csv")
    write_cifs(crystals, tmp_path / "cifs")
    from_csv = read_structures(tmp_path / "set.csv", limit=2)
    from_folder = read_structures(tmp_path / "cifs")
    assert from_csv.formulas() == crystals.formulas()[:2]
    assert from_folder.formulas() == crystals.formulas()
    torch.testing.assert_close(from_folder.lattice, crystals.lattice, atol=1e-4, rtol=0)
    with pytest.raises(InputError, match=r"nowhere\.csv: no such file or folder"):
        read_structures(tmp_path / "nowhere.csv")
    with pytest.raises(InputError, match="limit must be a positive integer, got 0"):
        read_structures(tmp_path / "set.csv", limit=0)


def test_evaluate_scores_the_reference_against_itself_and_checks_the_pairing(tmp_path):
    crystals = _crystals()
    metrics = evaluate(crystals, crystals, output=tmp_path / "m.json")
    assert metrics["match_rate"] == 1.0 and metrics["rmse"] < 1e-6
    assert metrics["validity"] == 1.0 and (tmp_path / "m.json").is_file()
    with pytest.raises(InputError, match="reference: 2 structures for 3 predictions"):
        evaluate(crystals, crystals[:2])
    with pytest.raises(InputError, match=r"a: composition Sr1Ti1O3 differs from .* Mg1O1"):
        evaluate(crystals[[0]], crystals[[1]])
    # a sample with overlapping atoms is read and scored invalid, not refused
    close = Structure(Lattice.cubic(4), ["Mg", "O"], [[0, 0, 0], [0.05, 0, 0]])
    overlapping = read_crystals([close], check_geometry=False)
    assert evaluate(overlapping)["valid"] == [False]
    with pytest.raises(InputError, match="overlapping atoms"):
        read_crystals([close])


def test_outputs_under_a_regular_file_and_bad_options_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match=r"output=.*file/out: .*file is a regular file"):
        check_output(tmp_path / "file" / "out")
    assert check_output(tmp_path / "new" / "out") == tmp_path / "new" / "out"
    with pytest.raises(InputError, match="steps must be a positive integer"):
        TrainRecipe(steps=0)
    with pytest.raises(InputError, match="ema must be < 1"):
        TrainRecipe(ema=1.0)
    with pytest.raises(InputError, match="ema_warmup must be true or false, got 'yes'"):
        TrainRecipe(ema_warmup="yes")
    crystals = _crystals()
    with pytest.raises(InputError, match=r"crysbfn: .*widht"):
        build_method(crystals, widht=3)
    with pytest.raises(InputError, match="task: diffcsp predicts structures"):
        build_method(crystals, "diffcsp", task="gen")
    model = build_method(crystals, "diffcsp", task="csp", hidden=8, layers=1, steps=2)
    with pytest.raises(InputError, match="generate: diffcsp predicts structures only"):
        sample_structures(model, tmp_path / "out", n=2)
    assert not (tmp_path / "out").exists()
    out = sample_structures(model, tmp_path / "out", compositions=["MgO", "SrTiO3"])
    assert out.crystals.formulas() == ["Mg1O1", "Sr1Ti1O3"] and len(out.cifs) == 2
    assert out.validity == sum(out.valid) / 2 and out.csv.is_file()


def test_shipped_models_load_by_name_and_predict_perovskites():
    """The shipped CrysBFN perov-5 model loads by name, predicts a perovskite composition in
    N = 10 network calls with a cubic-sized cell (perov-5 cells are 3.6-4.6 Å cubes); an
    unknown name lists the shipped ones."""
    assert {"crysbfn-perov5", "diffcsp-perov5"} <= set(shipped_models())
    model = load_model("crysbfn-perov5")
    assert model.config.task == "csp" and model.config.steps == 10
    calls = []
    model.net.register_forward_hook(lambda *_: calls.append(1))
    predicted = model.predict(["SrTiO3"], generator=torch.Generator().manual_seed(0))
    assert predicted.formulas() == ["Sr1Ti1O3"] and len(calls) == 10
    volume = float(torch.linalg.det(predicted.lattice[0]).abs())
    assert 3.0**3 < volume < 5.0**3
    with pytest.raises(InputError, match=r"no such model folder .*crysbfn-perov5"):
        load_model("crysbfn-nosuch")


def test_shipped_carbon_models_predict_carbon_cells_of_up_to_24_atoms():
    """The carbon-24 models know one element and 24 atoms; C24 and C6 are predicted (finite
    cells, seeded), C25 is refused by name."""
    for name in ("crysbfn-carbon24", "diffcsp-carbon24"):
        model = load_model(name)
        assert model.config.elements == (6,) and model.config.max_atoms == 24
    model = load_model("crysbfn-carbon24")
    predicted = model.predict(["C24", "C6"], generator=torch.Generator().manual_seed(0))
    assert predicted.formulas() == ["C24", "C6"]
    assert torch.isfinite(predicted.lattice).all() and predicted.num_atoms.tolist() == [24, 6]
    again = model.predict(["C24", "C6"], generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.frac, predicted.frac)
    with pytest.raises(InputError, match=r"composition C25: 25 atoms, more than the maximum 24"):
        model.predict(["C25"])


def test_shipped_generation_model_draws_perovskite_sized_crystals():
    """crysbfn-perov5-gen (task gen) generates 5-atom crystals (every perov-5 cell has 5) from
    its vocabulary in N = 10 calls."""
    model = load_model("crysbfn-perov5-gen")
    assert model.config.task == "gen" and model.config.steps == 10
    generated = model.generate(4, generator=torch.Generator().manual_seed(0))
    assert generated.num_atoms.tolist() == [5, 5, 5, 5]
    assert set(generated.numbers.tolist()) <= set(model.vocab.numbers)
