"""Prediction: load a trained model, denoise arrays and whole plates.

- :mod:`jumpdenoise.predict.model` — :func:`load_model` (run folder, checkpoint, BMZ zip).
- :mod:`jumpdenoise.predict.engine` — :class:`Predictor` (tiles or whole fields, bf16,
  torch.compile) and :func:`run_fields` (prefetch / write-behind pipeline).
- :mod:`jumpdenoise.predict.arrays` — :func:`denoise_array`.
- :mod:`jumpdenoise.predict.compare` — raw vs denoised statistics and noise estimates.
- :mod:`jumpdenoise.predict.export_tiff` — TIFFs + load_data CSV for CellProfiler.

The plate-level stage is :mod:`jumpdenoise.stages.predict`. Nothing heavy is imported here.
"""
