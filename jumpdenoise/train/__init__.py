"""Noise2Void training with CAREamics on plates and in-memory arrays.

Modules (none imports torch or CAREamics at package import):

- :mod:`~jumpdenoise.train.fields`: fields (lazy zarr level 0 or in memory) and the
  train/validation split (by well; by field or row band when there is one well/field).
- :mod:`~jumpdenoise.train.plate_patches`: field selection by channel name, plate statistics.
- :mod:`~jumpdenoise.train.patches`: the patch stream (seeded by seed + rank + worker + epoch,
  bounded field cache, batched numpy extraction and augmentation), validation patches.
- :mod:`~jumpdenoise.train.careamics_config`: our config -> CAREamics ``Configuration``.
- :mod:`~jumpdenoise.train.module`: CAREamics' ``N2VModule`` fed by our data module, per-rank
  masking seeds, ``sync_dist`` losses, per-epoch report and checkpointing callbacks.
- :mod:`~jumpdenoise.train.loop`: the training job, SLURM/DDP checks, resume.
- :mod:`~jumpdenoise.train.run_folder`: the run folder (see ``docs/FORMATS.md``).
- :mod:`~jumpdenoise.train.arrays`: in-memory images.
- :mod:`~jumpdenoise.train.masking`: N2V masking in the data workers (CAREamics' functions).
- :mod:`~jumpdenoise.train.graphs`: the training step as CUDA graphs (one GPU).
- :mod:`~jumpdenoise.train.export`: BioImage Model Zoo export (models load with
  :func:`jumpdenoise.predict.model.load_model`).

The plate stage is :mod:`jumpdenoise.stages.train`. Private CAREamics API is reached through
:mod:`jumpdenoise.compat` only.
"""
