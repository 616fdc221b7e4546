"""Nuclei and cell segmentation of one field, and agreement between two segmentations.

The classical method runs on a CPU with scikit-image, in the spirit of CellProfiler's
IdentifyPrimaryObjects / IdentifySecondaryObjects:

- nuclei: Gaussian smoothing, Otsu threshold, holes filled, small objects removed, touching
  nuclei split by a watershed of the distance transform from its local maxima;
- cells: a compact watershed of the smoothed cytoplasm channel seeded by the nuclei (basins
  are the dim cytoplasm, ridges the bright membranes between cells; the distance to the seed
  weighs in, as in CellProfiler's propagation), inside the foreground given by
  an Otsu threshold of that channel's log intensities (CellProfiler's "log transform before
  thresholding"; nuclei always included, holes filled).

``cellpose`` is used instead only when asked for, installed and a GPU is present.
"""

from __future__ import annotations

import numpy as np

from jumpdenoise.errors import ConfigError

NUCLEUS_SIGMA = 2.0
CELL_SIGMA = 2.0
PEAK_MIN_DISTANCE = 7
#: Cost of one pixel of distance from the seed in the cell watershed, in units of the
#: cytoplasm channel's foreground intensity range (so 100 pixels cost as much as that range).
CELL_COMPACTNESS = 0.01


def _drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """``labels`` without the objects of fewer than ``min_area`` pixels."""
    areas = np.bincount(labels.ravel())
    areas[0] = min_area
    return np.where(areas[labels] < min_area, 0, labels)


def segment_nuclei(dna: np.ndarray, min_area: int = 30) -> np.ndarray:
    """Label image (int32, background 0) of the nuclei in a DNA plane."""
    from scipy import ndimage as ndi
    from skimage import feature, filters, segmentation

    smooth = filters.gaussian(np.asarray(dna, np.float32), NUCLEUS_SIGMA, preserve_range=True)
    if float(smooth.max()) <= float(smooth.min()):
        return np.zeros(smooth.shape, np.int32)
    foreground = ndi.binary_fill_holes(smooth > filters.threshold_otsu(smooth))
    foreground = _drop_small(ndi.label(foreground)[0], min_area) > 0
    distance = ndi.distance_transform_edt(foreground)
    blobs, _ = ndi.label(foreground)
    peaks = feature.peak_local_max(distance, min_distance=PEAK_MIN_DISTANCE, labels=blobs, exclude_border=False)
    markers = np.zeros(distance.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    labels = _drop_small(labels, min_area)
    return segmentation.relabel_sequential(labels.astype(np.int32))[0]


def segment_cells(cytoplasm: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """Cells grown from ``nuclei`` in a cytoplasm plane; cell ``k`` holds nucleus ``k``."""
    from scipy import ndimage as ndi
    from skimage import filters, segmentation

    smooth = filters.gaussian(np.asarray(cytoplasm, np.float32), CELL_SIGMA, preserve_range=True)
    if float(smooth.max()) > float(smooth.min()):
        # Otsu on log intensities: bright membrane spots do not drag the threshold up
        log_smooth = np.log(np.clip(smooth, 1.0, None))
        foreground = ndi.binary_fill_holes((log_smooth > filters.threshold_otsu(log_smooth)) | (nuclei > 0))
    else:
        foreground = np.ones(smooth.shape, bool)
    # Membranes are bright: flooding the intensity from the nuclei fills the dim cytoplasm first,
    # so neighbouring cells meet on the membrane ridges between them. The compactness term
    # (distance to the seed, per pixel, against intensity scaled to 0..1 over the foreground)
    # keeps one front from running along a dim valley through the whole field where nuclei are
    # brighter than their cytoplasm; without membranes, cells split halfway between nuclei.
    lo, hi = np.percentile(smooth[foreground], (1, 99))
    scaled = np.clip((smooth - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    return segmentation.watershed(scaled, nuclei, mask=foreground, compactness=CELL_COMPACTNESS).astype(np.int32)


def _cellpose_available() -> bool:
    try:
        import cellpose  # noqa: F401
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _segment_cellpose(dna: np.ndarray, cytoplasm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from cellpose import models  # type: ignore[import-not-found]

    model = models.CellposeModel(gpu=True)
    nuclei = model.eval(np.asarray(dna, np.float32), channel_axis=None)[0].astype(np.int32)
    both = np.stack([np.asarray(cytoplasm, np.float32), np.asarray(dna, np.float32)], -1)
    cells = model.eval(both, channel_axis=-1)[0].astype(np.int32)
    return nuclei, cells


def segment_field(dna: np.ndarray, cytoplasm: np.ndarray, method: str = "classical",
                  min_area: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and cell label images of one field.

    Raises
    ------
    ConfigError
        If ``method`` is ``"cellpose"`` and cellpose or a GPU is missing.
    """
    if method == "cellpose":
        if not _cellpose_available():
            raise ConfigError("evaluate.method: 'cellpose' needs the cellpose package and a CUDA GPU; "
                              "use 'classical'")
        return _segment_cellpose(dna, cytoplasm)
    nuclei = segment_nuclei(dna, min_area)
    return nuclei, segment_cells(cytoplasm, nuclei)


def match_counts(reference: np.ndarray, predicted: np.ndarray, iou_threshold: float = 0.5) -> dict[str, int]:
    """Objects of ``predicted`` matching one of ``reference`` with IoU above ``iou_threshold``.

    With a threshold of at least 0.5 each object matches at most one other, so matches are
    counted directly from the overlap table.

    Returns
    -------
    dict
        ``n_reference``, ``n_predicted`` and ``matched`` (true positives).
    """
    ref = np.asarray(reference).ravel().astype(np.int64)
    pred = np.asarray(predicted).ravel().astype(np.int64)
    n_ref, n_pred = int(ref.max(initial=0)), int(pred.max(initial=0))
    overlap = np.bincount(ref * (n_pred + 1) + pred, minlength=(n_ref + 1) * (n_pred + 1))
    overlap = overlap.reshape(n_ref + 1, n_pred + 1)[1:, 1:].astype(np.float64)
    area_ref = np.bincount(ref, minlength=n_ref + 1)[1:].astype(np.float64)
    area_pred = np.bincount(pred, minlength=n_pred + 1)[1:].astype(np.float64)
    union = area_ref[:, None] + area_pred[None, :] - overlap
    iou = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
    matched = int((iou > iou_threshold).any(axis=1).sum()) if iou.size else 0
    present_ref = int((area_ref > 0).sum())
    present_pred = int((area_pred > 0).sum())
    return {"n_reference": present_ref, "n_predicted": present_pred, "matched": matched}


def f1_score(counts: dict[str, int]) -> float | None:
    """F1 of summed :func:`match_counts` (``None`` when neither side has an object)."""
    total = counts["n_reference"] + counts["n_predicted"]
    return 2.0 * counts["matched"] / total if total else None
