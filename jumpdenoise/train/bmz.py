"""BioImage Model Zoo description of a trained jumpdenoise UNet (bioimageio.spec 0.5).

:func:`write_bmz_package` builds the archive itself rather than through CAREamics'
``export_to_bmz``, so that it runs where careamics is absent and passes ``bioimageio test``
with one alert only, or none with a maintainer (see *GitHub user* below):

- two weight formats: ``torchscript`` (traced in eval mode, checked equal to the state dict
  on the example and on a second size; runs with torch alone: deepImageJ, bioimageio.core
  in a fresh environment) and ``pytorch_state_dict`` (CAREamics' UNet; what
  ``CAREamist(bmz_path=...)`` and ``jumpdenoise predict MODEL.zip`` load); a third, ``onnx``
  (opset 18, any batch and any y/x multiple of the stride; runs with onnxruntime alone),
  when the ``onnx`` extra is installed and the export equals the state dict on two sizes;
- an ``environment.yml`` pinning the torch release without its build tag (``2.11.0``, not
  ``2.11.0+cu130``, which is not on PyPI);
- test tensors (``.npy``) and sample tensors (``.tif``) for input and output;
- y/x sizes parametrised as ``min + n * step`` with ``step = 2**depth`` (the UNet's stride);
- the normalisation as pre/post-processing (``fixed_zero_mean_unit_variance``), so that the
  model takes and returns raw intensities; ``normalization.json`` and ``careamics.yaml`` as
  attachments.

GitHub user: without maintainers the description names no ``github_user``, so ``bioimageio
test`` reports its one alert "Missing `maintainers` or any author in `authors` with a specified
`github_user` name". :attr:`BmzInfo.maintainers` (``jumpdenoise export --maintainer USER``)
adds ``maintainers: [{github_user: USER}]``, which the Model Zoo asks of a published model and
which removes the alert. bioimageio.spec looks every ``github_user`` up at api.github.com
whenever io checks are on: ``bioimageio test`` always turns them on, so a zip with a maintainer
is tested online. The export itself stays offline: bioimageio.core's test rebuilds a
description with io checks on, so it tests the description before the maintainers are added;
they are then added, and the zip saved (which validates it again), under
``ValidationContext(perform_io_checks=False)``. Loading a zip for prediction
(:func:`jumpdenoise.compat.load_careamics_bmz`) turns them off too, so compute nodes and CI
without internet load either zip.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jumpdenoise.errors import ModelError

__all__ = ["BmzInfo", "bmz_name", "onnx_checked", "torch_release", "trace_checked", "write_bmz_package"]

log = logging.getLogger(__name__)

#: bioimageio.core's fixed_zero_mean_unit_variance divides by ``std + EPS``.
EPS = 1e-6
NAME_CHARACTERS = r"[^A-Za-z0-9_+\- ()]"
#: ONNX opset of the exported weights.
ONNX_OPSET = 18
DEFAULT_AUTHOR = "jumpdenoise developers"


@dataclass
class BmzInfo:
    """Human-facing fields of the description.

    Attributes
    ----------
    name
        Model name (made valid by :func:`bmz_name`).
    description
        One-paragraph description.
    authors
        Author names, or dicts of BMZ author fields (``name``, ``affiliation``, ``email``, ``orcid``).
    data_description
        What the model was trained on (goes into the documentation).
    tags
        Extra tags.
    maintainers
        GitHub user names of the maintainers (``maintainers`` of the description; none by
        default: see *GitHub user* in the module docstring).
    """

    name: str
    description: str
    authors: list[str | dict] = field(default_factory=lambda: [DEFAULT_AUTHOR])
    data_description: str = ""
    tags: list[str] = field(default_factory=list)
    maintainers: list[str] = field(default_factory=list)


def bmz_name(raw: str) -> str:
    """A valid BioImage Model Zoo name from ``raw``: allowed characters only, 5 to 128 long.

    Short names are completed (``"demo"`` -> ``"demo N2V denoiser"``).
    """
    name = re.sub(r"\s+", " ", re.sub(NAME_CHARACTERS, "_", raw)).strip()
    if len(name) < 5:
        name = f"{name} N2V denoiser".strip()
    return name[:128]


def torch_release(version: str | None = None) -> str:
    """The torch version without its local build tag (``2.11.0+cu130`` -> ``2.11.0``)."""
    import torch

    return (version or torch.__version__).split("+", 1)[0]


def trace_checked(model: Any, example: np.ndarray, step: int) -> Any:
    """``torch.jit.trace`` of ``model`` in eval mode, checked equal to ``model`` at two sizes.

    Parameters
    ----------
    model
        The UNet (``torch.nn.Module``); put in eval mode.
    example
        Normalised ``(1, c, y, x)`` float32 input, ``y`` and ``x`` multiples of ``step``.
    step
        The UNet's stride (``2**depth``); the second check uses ``y + step, x + step``.

    Raises
    ------
    ModelError
        If the traced module differs from the model (beyond float32 rounding).
    """
    import torch

    model = model.eval()
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    bigger = torch.nn.functional.pad(x, (0, step, 0, step), mode="reflect")
    with torch.no_grad(), warnings.catch_warnings():
        # CAREamics' UNet checks channel counts in Python; the checks below cover another size
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, x, check_trace=False)
        for probe in (x, bigger):
            ref, got = model(probe), traced(probe)
            err = float((ref - got).abs().max())
            if err > 1e-5 * max(1.0, float(ref.abs().max())):
                raise ModelError(f"torchscript trace differs from the state dict by {err:.3g} on input "
                                 f"{tuple(probe.shape)}")
    return traced


def onnx_checked(model: Any, example: np.ndarray, step: int, path: Path) -> bool:
    """Export ``model`` (eval mode) to the single ONNX file ``path``, checked equal to it with onnxruntime.

    The graph takes any batch size and any y/x multiple of ``step`` (``torch.onnx.export``,
    opset :data:`ONNX_OPSET`, weights inside the file). It is checked on the example and on an
    input one ``step`` bigger in y and x, with two images.

    Parameters
    ----------
    model
        The UNet (``torch.nn.Module``).
    example
        Normalised ``(1, c, y, x)`` float32 input, ``y`` and ``x`` multiples of ``step``.
    step
        The UNet's stride (``2**depth``).
    path
        The ``.onnx`` file to write.

    Returns
    -------
    bool
        Whether ``path`` holds checked weights. False, with the reason logged, when onnx,
        onnxscript or onnxruntime is missing (``pip install 'jumpdenoise[onnx]'``), when the
        export fails, or when its output differs from the model's.
    """
    import importlib.util

    import torch

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        log.info("ONNX weights left out: %s not installed (pip install 'jumpdenoise[onnx]')", ", ".join(missing))
        return False
    import onnxruntime

    model = model.eval()
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    dims = {0: torch.export.Dim("batch", min=1), 2: torch.export.Dim("ny", min=1) * step,
            3: torch.export.Dim("nx", min=1) * step}
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's own deprecation notices
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=ONNX_OPSET, external_data=False,
                              input_names=["input"], output_names=["prediction"], dynamic_shapes=(dims,))
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        bigger = torch.nn.functional.pad(x, (0, step, 0, step), mode="reflect").repeat(2, 1, 1, 1)
        for probe in (x, bigger):
            with torch.no_grad():
                ref = model(probe).numpy()
            got = session.run(None, {"input": probe.numpy()})[0]
            err = float(np.abs(ref - got).max())
            if got.shape != ref.shape or err > 1e-4 * max(1.0, float(np.abs(ref).max())):
                log.warning("ONNX weights left out: onnxruntime's output differs from the state dict's by %.3g "
                            "on input %s", err, tuple(probe.shape))
                return False
    except Exception as exc:  # noqa: BLE001 - the export is optional: the zip keeps its other weights
        log.warning("ONNX weights left out: the export failed (%s: %s)", type(exc).__name__,
                    str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        return False
    return True


def _env_text() -> str:
    from importlib.metadata import version

    return ("name: jumpdenoise-n2v\nchannels:\n  - conda-forge\n  - nodefaults\ndependencies:\n"
            "  - python>=3.11\n  - pip\n  - pip:\n"
            f"    - torch=={torch_release()}\n    - careamics=={version('careamics')}\n")


def _readme(info: BmzInfo, channels: list[str], mean: list[float], std: list[float], step: int,
            with_onnx: bool = False) -> str:
    rows = "\n".join(f"| {c} | {m:.6g} | {s:.6g} |" for c, m, s in zip(channels, mean, std))
    return (f"# {info.name}\n\n{info.description}\n\n## Data\n\n{info.data_description or 'Not described.'}\n\n"
            "## Input and output\n\nRaw intensities of the channels below, axes (batch, channel, y, x); y and x "
            f"are multiples of {step}. The model normalises each channel with the mean and standard deviation of "
            f"its training data and returns denoised raw intensities.\n\n| channel | mean | std |\n|---|---|---|\n"
            f"{rows}\n\n## Weights\n\n- `torchscript`: runs with PyTorch alone (traced in eval mode).\n"
            + (f"- `onnx`: opset {ONNX_OPSET}, runs with onnxruntime alone.\n" if with_onnx else "") +
            "- `pytorch_state_dict`: the CAREamics UNet (`careamics.models.unet.UNet`).\n\n"
            "## Validation\n\nThe torchscript trace (and the ONNX graph) was checked equal to the state dict at "
            "two input sizes, and every weight format reproduces the test output with bioimageio.core. Noise2Void "
            "needs no clean images, so the export carries no accuracy figure; jumpdenoise reports the noise of raw and "
            "denoised plates after prediction.\n\nTrained with jumpdenoise (Noise2Void, CAREamics).\n")


def write_bmz_package(out: Path, *, model: Any, careamics_config: Any, channels: list[str], mean: list[float],
                      std: list[float], example: np.ndarray, info: BmzInfo, work: Path,
                      attachments: list[Path] = ()) -> Path:
    """Write the BioImage Model Zoo zip ``out`` for ``model`` and test it with bioimageio.core.

    Parameters
    ----------
    out
        Archive to write (``.zip``).
    model
        The CAREamics UNet with its trained weights.
    careamics_config
        Its CAREamics ``Configuration`` (architecture kwargs, citations, tags).
    channels, mean, std
        Channel names and per-channel normalisation (raw intensity units).
    example
        ``(1, c, y, x)`` raw-intensity crop (test and sample input).
    info
        Name, description, authors, maintainers. The maintainers are added after
        bioimageio.core's test and saved with io checks off, so that their GitHub user names
        are not looked up online (see *GitHub user* in the module docstring).
    work
        Empty scratch folder for the files the archive holds.
    attachments
        Extra files to attach (e.g. ``normalization.json``).

    Returns
    -------
    Path of the archive.

    Raises
    ------
    ModelError
        If the trace differs from the model or bioimageio.core's test fails.
    """
    import tifffile
    import torch
    from bioimageio.core import test_model
    from bioimageio.spec import get_validation_context, save_bioimageio_package
    from bioimageio.spec.model import v0_5 as bmz

    from jumpdenoise.compat import create_cover
    from jumpdenoise.compat import save_careamics_configuration as save_configuration

    depth = int(careamics_config.algorithm_config.model.depth)
    step = 2 ** depth
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    x_raw = np.ascontiguousarray(example, dtype=np.float32)
    x_norm = ((x_raw - m) / (s + EPS)).astype(np.float32)
    traced = trace_checked(model, x_norm, step)
    with torch.no_grad():
        y_norm = model(torch.from_numpy(x_norm)).numpy()
    inv_mean = [float(-mu / sd) for mu, sd in zip(mean, std)]
    inv_std = [max(float(1.0 / sd) - EPS, EPS) for sd in std]
    y_raw = ((y_norm - np.asarray(inv_mean, np.float32)[None, :, None, None])
             / (np.asarray(inv_std, np.float32)[None, :, None, None] + EPS)).astype(np.float32)
    files = {"inputs": work / "test_input.npy", "outputs": work / "test_output.npy",
             "sample_in": work / "sample_input.tif", "sample_out": work / "sample_output.tif",
             "weights": work / "weights.pth", "script": work / "weights_torchscript.pt", "onnx": work / "weights.onnx",
             "env": work / "environment.yml", "doc": work / "README.md"}
    np.save(files["inputs"], x_raw)
    np.save(files["outputs"], y_raw)
    tifffile.imwrite(files["sample_in"], x_raw)
    tifffile.imwrite(files["sample_out"], y_raw)
    torch.save(model.state_dict(), files["weights"])
    traced.save(str(files["script"]))
    with_onnx = onnx_checked(model, x_norm, step, files["onnx"])
    files["env"].write_text(_env_text())
    files["doc"].write_text(_readme(info, channels, mean, std, step, with_onnx))
    config_path = save_configuration(careamics_config, work / "careamics.yaml")
    cover = create_cover(work, x_raw, y_raw)

    channel_ids = [bmz.Identifier(re.sub(r"\W", "_", c)) for c in channels]
    size = bmz.ParameterizedSize(min=step, step=step)

    def axes(space_axis: Any, sizes: dict) -> list:
        return [bmz.BatchAxis(), bmz.ChannelAxis(channel_names=channel_ids),
                *(space_axis(id=bmz.AxisId(a), size=sizes[a]) for a in ("y", "x"))]

    in_id, out_id = bmz.TensorId("input"), bmz.TensorId("prediction")
    inputs = bmz.InputTensorDescr(
        id=in_id, axes=axes(bmz.SpaceInputAxis, {"y": size, "x": size}),
        test_tensor=bmz.FileDescr(source=files["inputs"]), sample_tensor=bmz.FileDescr(source=files["sample_in"]),
        preprocessing=[bmz.FixedZeroMeanUnitVarianceDescr(kwargs=bmz.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=[float(v) for v in mean], std=[float(v) for v in std], axis=bmz.AxisId("channel")))])
    outputs = bmz.OutputTensorDescr(
        id=out_id, axes=axes(bmz.SpaceOutputAxis, {a: bmz.SizeReference(tensor_id=in_id, axis_id=bmz.AxisId(a))
                                                   for a in ("y", "x")}),
        test_tensor=bmz.FileDescr(source=files["outputs"]), sample_tensor=bmz.FileDescr(source=files["sample_out"]),
        postprocessing=[bmz.FixedZeroMeanUnitVarianceDescr(kwargs=bmz.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=inv_mean, std=inv_std, axis=bmz.AxisId("channel")))])
    release = bmz.Version(torch_release())
    unet = careamics_config.algorithm_config.model
    arch = bmz.ArchitectureFromLibraryDescr(import_from="careamics.models.unet",
                                            callable=bmz.Identifier(str(unet.architecture)),
                                            kwargs=unet.model_dump(mode="json"))
    weights = bmz.WeightsDescr(
        pytorch_state_dict=bmz.PytorchStateDictWeightsDescr(
            source=files["weights"], architecture=arch, pytorch_version=release,
            dependencies=bmz.FileDescr(source=files["env"])),
        torchscript=bmz.TorchscriptWeightsDescr(source=files["script"], pytorch_version=release,
                                                parent="pytorch_state_dict"),
        onnx=bmz.OnnxWeightsDescr(source=files["onnx"], opset_version=ONNX_OPSET, parent="pytorch_state_dict")
        if with_onnx else None)
    from jumpdenoise import __version__

    descr = bmz.ModelDescr(
        name=bmz_name(info.name), description=info.description,
        authors=[bmz.Author(**a) if isinstance(a, dict) else bmz.Author(name=a)
                 for a in info.authors or [DEFAULT_AUTHOR]],
        documentation=bmz.FileDescr(source=files["doc"]), covers=[bmz.FileDescr(source=cover)],
        cite=careamics_config.get_algorithm_citations(), license="BSD-3-Clause",
        tags=sorted({*careamics_config.get_algorithm_keywords(), "jumpdenoise", "cell-painting", *info.tags}),
        version=bmz.Version(__version__), inputs=[inputs], outputs=[outputs], weights=weights,
        attachments=[bmz.FileDescr(source=p) for p in (config_path, *attachments)])
    for weight_format in ("torchscript", "pytorch_state_dict", *(("onnx",) if with_onnx else ())):
        summary = test_model(descr, weight_format=weight_format)
        if summary.status != "passed":
            raise ModelError(f"bioimageio test of the {weight_format} weights failed:\n{summary.format()}")
    if not info.maintainers:
        save_bioimageio_package(descr, output_path=out)
        return out
    # io checks off: bioimageio.spec would look each github_user up at api.github.com
    with get_validation_context().replace(perform_io_checks=False):
        descr.maintainers = [bmz.Maintainer(github_user=user) for user in info.maintainers]
        save_bioimageio_package(descr, output_path=out)
    return out
