"""Crystal readers, writers and batches: round trips through CIF and CSV, the shared perov-5 split,
fully connected graphs, and the bad-input matrix (each error names the structure)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.io.cif import CifWriter

from polydiff.core.errors import InputError
from polydiff.crystal.data import (
    ElementVocab,
    fully_connected_edges,
    read_cif_folder,
    read_crystals,
    read_csv,
    synthetic,
    to_batch,
    write_cifs,
)
from polydiff.crystal.data import write_csv as write_crystals_csv

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "crystal"


@pytest.fixture(scope="module")
def crystals():
    return synthetic(6, seed=1)


def rock_salt() -> Structure:
    return Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def write_csv(path: Path, structures: list[Structure]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "material_id", "cif"])
        for i, s in enumerate(structures):
            writer.writerow([i, f"mp-{i}", s if isinstance(s, str) else str(CifWriter(s))])
    return path


def test_synthetic_is_seeded_and_checked(crystals):
    assert len(crystals) == 6 and int(crystals.num_atoms.max()) <= 8
    again = synthetic(6, seed=1)
    assert torch.equal(again.frac, crystals.frac) and torch.equal(again.numbers, crystals.numbers)
    assert ((crystals.frac >= 0) & (crystals.frac < 1)).all()
    assert (torch.linalg.det(crystals.lattice.double()).abs() > 1).all()


def test_cif_folder_round_trip(crystals, tmp_path):
    paths = write_cifs(crystals, tmp_path)
    assert len(paths) == len(crystals) and all(p.suffix == ".cif" for p in paths)
    back = read_cif_folder(tmp_path, niggli=False)
    assert torch.equal(back.numbers, crystals.numbers)
    assert torch.allclose(back.lattice, crystals.lattice, atol=1e-5)
    diff = (back.frac - crystals.frac + 0.5) % 1 - 0.5  # equal up to whole cells
    assert diff.abs().max() < 1e-5
    assert back.names[0] == str(paths[0])


def test_csv_reader_matches_structures(crystals, tmp_path):
    structures = crystals.structures()
    got = read_csv(write_crystals_csv(crystals, tmp_path / "set.csv"))
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    assert all(matcher.fit(a, b) for a, b in zip(got.structures(), structures))
    assert got.names[2].endswith("set.csv:row 2 (synthetic 2)")
    assert len(read_csv(tmp_path / "set.csv", limit=2)) == 2


def test_perov_split_reads_with_its_formulas():
    # the project's data folder sits beside the clone (../shared), in CI too
    assert SHARED.is_dir(), f"the shared benchmark splits are missing: {SHARED}"
    got = read_csv(SHARED / "perov_5" / "val.csv", limit=20)
    with (SHARED / "perov_5" / "val.csv").open(newline="") as f:
        rows = [row for _, row in zip(range(20), csv.DictReader(f))]
    assert got.num_atoms.tolist() == [5] * 20
    for s, row in zip(got.structures(), rows):
        assert s.composition == Composition(row["formula"])
    # the canonical (Niggli, from-parameters) frame: a lower-triangular-free first vector on x
    assert torch.allclose(got.lattice[:, 0, 1:], torch.zeros(20, 2), atol=1e-4)


def test_carbon_split_reads_up_to_24_atoms_and_names_a_row_over_the_maximum():
    got = read_csv(SHARED / "carbon_24" / "val.csv", limit=30, max_atoms=24)
    assert set(got.numbers.tolist()) == {6} and 6 <= int(got.num_atoms.min())
    assert int(got.num_atoms.max()) <= 24
    big = next(i for i, n in enumerate(got.num_atoms.tolist()) if n > 20)
    with pytest.raises(
        InputError, match=rf"val.csv:row {big} \(C-[0-9-]+\): {got.num_atoms[big]} "
    ):
        read_csv(SHARED / "carbon_24" / "val.csv", limit=30, max_atoms=20)


def test_batch_is_fully_connected_within_each_crystal(crystals):
    vocab = ElementVocab.covering(crystals)
    batch = to_batch(crystals, vocab)
    n = crystals.num_atoms
    assert batch.edge_index.shape[1] == int((n**2).sum())
    src, dst = batch.edge_index
    assert torch.equal(batch.batch[src], batch.batch[dst])
    pairs = {(int(a), int(b)) for a, b in batch.edge_index.T}
    for o, k in zip(crystals.offsets.tolist(), n.tolist()):
        assert all((o + i, o + j) in pairs for i in range(k) for j in range(k))
    assert torch.equal(vocab.decode(batch.types), crystals.numbers)
    assert batch.lattice.shape == (len(crystals), 3, 3)
    assert torch.equal(fully_connected_edges(n), batch.edge_index)


def test_subsets_keep_their_atoms(crystals):
    sub = crystals[[4, 1]]
    assert sub.names == (crystals.names[4], crystals.names[1])
    assert sub.structure(0) == crystals.structure(4) and sub.structure(1) == crystals.structure(1)


def overlapping():
    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])


def zero_volume():
    return Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 0]]), ["Na"], [[0, 0, 0]])


def disordered():
    return Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])


GARBAGE_CIF = "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\n"

CASES = {
    "malformed CIF": ([GARBAGE_CIF], {}, "row 0 (mp-0): malformed CIF"),
    "overlapping atoms": ([overlapping()], {}, "row 0 (mp-0): overlapping atoms"),
    "zero volume": ([zero_volume()], {}, "row 0 (mp-0): zero volume"),
    "disordered": ([disordered()], {}, "row 0 (mp-0): disordered"),
    "outside vocabulary": (
        [rock_salt(), rock_salt().replace_species({"Na": "U"})],
        {"vocab": ElementVocab.from_symbols(["Na", "Cl"])},
        "row 1 (mp-1): element U is outside the vocabulary",
    ),
    "too many atoms": (
        [rock_salt() * (2, 1, 1)],
        {"max_atoms": 3},
        "row 0 (mp-0): 4 atoms, more than the maximum 3",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_structures_are_refused_by_name(case, tmp_path):
    structures, options, message = CASES[case]
    if case in ("zero volume", "disordered"):  # pymatgen cannot write these as CIF: read directly
        with pytest.raises(InputError, match=r"structure 0: " + message.split(": ", 1)[1]):
            read_crystals(structures, **options)
        return
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_csv(write_csv(tmp_path / "bad.csv", structures), **options)


def test_bad_files_are_refused_by_name(tmp_path):
    with pytest.raises(InputError, match=r"missing.csv: no such file"):
        read_csv(tmp_path / "missing.csv")
    (tmp_path / "nocif.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"nocif.csv: no 'cif' column"):
        read_csv(tmp_path / "nocif.csv")
    with pytest.raises(InputError, match=r"no .cif files"):
        read_cif_folder(tmp_path)
    (tmp_path / "bad.cif").write_text(GARBAGE_CIF)
    with pytest.raises(InputError, match=r"bad.cif: malformed CIF"):
        read_cif_folder(tmp_path)


def test_batch_names_the_crystal_with_an_unknown_element(crystals):
    vocab = ElementVocab.covering(crystals[0])
    first_bad = next(
        i
        for i in range(len(crystals))
        if not set(crystals[i].numbers.tolist()) <= set(vocab.numbers)
    )
    with pytest.raises(InputError, match=f"synthetic {first_bad}: element .* outside the vocab"):
        to_batch(crystals, vocab)
