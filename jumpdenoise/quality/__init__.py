"""Denoising quality: scores against ground truth, truth loading, and the gain estimated without truth.

- :mod:`~jumpdenoise.quality.metrics`: PSNR, SSIM, mean bias of one plane (``score``).
- :mod:`~jumpdenoise.quality.truth`: find and load a plate's ground truth; score plates.
- :mod:`~jumpdenoise.quality.gain`: the gain in dB of a trained N2V model estimated from
  masked held-out pixels (no truth needed), stored in the run folder; the guard before predict.
"""
