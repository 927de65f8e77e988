"""polydiff.medical: 3D CT and MRI reconstruction with 2D diffusion priors.

Modules (see docs/medical.md):
  operators  forward models with exact adjoints: parallel / limited-angle / fan-beam CT as cached
             sparse matrices, a grid_sample projector, Cartesian MRI with undersampling masks
  data       NIfTI / DICOM volumes with their affine, intensity windowing, seedable 3D phantoms
  metrics    PSNR / SSIM per slice along the three axes and for the volume
  baselines  back-projection, FBP (parallel and fan beam), CG least squares, 3D TV-ADMM
  nets       the 2D slice U-Net prior network
  prior      the slice prior as a core Method (medical/slice_prior): recipe (VP, eps
             prediction), training through polydiff.core.train, export, loading, sampling
  methods    registers the medical methods with polydiff.core.method
  measurements  simulated measurements (operator config, noise model) saved and loaded
  reconstruction  every reconstruction by name: reconstruct(name, prior, op, y, **options),
             list_reconstructions()
  prior_quality  a prior's Tweedie denoising PSNR on held-out slices vs oracle TV denoising
  solvers    DDS, DiffusionMBIR, DPS and RED-diff on a volume with any 2D slice prior, and the
             parameters validated per modality (solvers.validated)
"""
