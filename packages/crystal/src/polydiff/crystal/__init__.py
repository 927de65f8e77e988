"""polydiff.crystal: crystal structure prediction and generation with CrysBFN.

Modules (see docs/crystal.md):
  data      CDVAE/DiffCSP CSV files, CIF folders, pymatgen structures and a pyxtal synthetic set
            into one checked Crystals record; element vocabulary; torch-geometric batches fully
            connected per crystal; CIF / CSV writing
  nets      CSPNet: periodic E(3)-invariant message passing with entropy conditioning
  crysbfn   CrysBFN (crystal/crysbfn): circular, Gaussian and discrete Bayesian flows, the
            N-step loss with the (m, c) bank, CSP predict and ab-initio generate
  metrics   structural validity, StructureMatcher match rate / RMSE, random-coordinate baseline
  methods   registers the crystal methods with polydiff.core.method
  workflow  what the `polydiff crystal` verbs call: read a training set, train and export,
            sample into CIFs + CSV, evaluate
"""
