"""Does denoising keep the biology? Segmentation and CellProfiler features, raw vs denoised vs truth.

- :mod:`~jumpdenoise.evaluate.segment`: nuclei and cells (Otsu + watershed), segmentation F1;
- :mod:`~jumpdenoise.evaluate.features`: per-object features with ``cp_measure``, per family;
- :mod:`~jumpdenoise.evaluate.well`: one well, every version on shared masks;
- :mod:`~jumpdenoise.evaluate.compare`, :mod:`~jumpdenoise.evaluate.report`: the comparisons and the report.

Ground truth is read through :mod:`jumpdenoise.quality.truth`. The pipeline stage is :mod:`jumpdenoise.stages.evaluate`; the command ``jumpdenoise evaluate``.
"""
