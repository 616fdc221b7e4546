"""Denoising quality against ground truth: raw vs jumpdenoise vs ``CAREamist``, at equal wall time.

For each image set, both trainers get the same noisy images, the same validation images, the
same CAREamics configuration (the one jumpdenoise writes to its run folder: one UNet of depth 2
per channel, 64 x 64 patches, XYFlip + XYRandomRotate90, the training images' per-channel
mean/std, and the ``--recipe``'s width, batch, masking and learning rate, see
:func:`recipe_settings`) and the same wall-clock training budget (``--minutes``; Lightning's
``max_time``, counted from the start of training). Every image is then denoised and scored
against its truth with :func:`jumpdenoise.quality.metrics.score`: PSNR, SSIM and the
mean-intensity bias (%), per plane, grouped per channel (synthetic plates) or per
microscope/sample type (FMD). ``gaussian`` is the raw image blurred by the Gaussian that splits
the blend's bands (sigma 1 px): the floor any denoiser must beat. For jumpdenoise both what predict writes (the network's output
blended with the raw image, :mod:`jumpdenoise.quality.blend`) and the network's output alone
are scored, and the gains it estimates without truth are printed next to the true gains (and,
as a diagnostic, next to the true gains against each image's truth shifted by the image's global
offset, :func:`quality_sets.true_gains`, and next to the correlation of the noise between
neighbouring pixels, :func:`quality_sets.noise_neighbour_correlation`).

Sets (``--sets``, :mod:`quality_sets`): synthetic plates ``jump`` and ``low-light`` with their
truth, and the real FMD pairs ``fmd`` (trained on ``raw/`` only, scored against ``gt/``, PSNR
peak 255 as in the literature; ``--fmd-types`` picks types). One model per method is trained per
microscope (:func:`quality_sets.training_groups`: a synthetic plate is one; FMD's confocal,
two-photon and widefield images are three, as a plate comes from one microscope), for the budget's
share of that microscope's images; jumpdenoise decides per model, from the noise of its training
images, whether it trains on phase sub-images (``train.n2v.phase_split: auto``; FMD's widefield
noise is correlated between neighbouring pixels). The blend weights and the gain estimate are
measured per instrument unit (:func:`quality_sets.instrument_units`), as predict measures them per
plate: one unit for a synthetic plate, one per microscope/sample type for FMD, whose 12 types have
different noise.

Each method is trained ``--seeds`` times (training seeds ``--seed`` .. ``--seed + seeds - 1``,
the data fixed); the table gives the mean and the standard deviation over seeds. Targets are
printed as PASS/FAIL lines; the JSON and the log go under ``benchmarks/results/<--name>/``.

Usage::

    python benchmarks/quality.py --minutes 5 --seeds 3               # CPU
    python benchmarks/quality.py --device cuda --minutes 2 --name h200-quality
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from quality_sets import (
    FMD_ROOT,
    ROOT,
    ImageSet,
    instrument_units,
    load_fmd,
    noise_neighbour_correlation,
    over_seeds,
    score_images,
    split_val,
    subset,
    synthetic_set,
    training_groups,
    true_gains,
)

METHODS = ("raw", "gaussian", "jumpdenoise", "jumpdenoise-network", "careamics")


def trainer_settings(args: argparse.Namespace, seconds: float) -> dict:
    return {"accelerator": args.device, "devices": 1, "precision": args.precision, "num_workers": 0,
            "enable_progress_bar": False, "extra": {"max_time": {"seconds": seconds}}}


def recipe_settings(args: argparse.Namespace) -> dict:
    """Training settings both trainers get (jumpdenoise directly, CAREamist through the
    CAREamics configuration jumpdenoise writes to its run folder).

    ``budget``: :func:`jumpdenoise.bsd_schedule.budget_train_settings` of the device (network
    width, batch, 1 % masked pixels, peak learning rate), with the learning rate following the
    wall clock to the deadline. ``careamics``: CAREamics' defaults (UNet depth 2 with 32 initial
    features, batch ``--batch``, 0.2 % masked pixels, Adam 1e-4).
    """
    if args.recipe == "careamics":
        return {"batch_size": args.batch, "patches_per_epoch": args.epoch_steps * args.batch or None}
    from jumpdenoise.bsd_schedule import budget_train_settings

    settings = budget_train_settings(args.device)
    keep = ("batch_size", "patches_per_epoch", "model", "n2v", "optimizer", "n2v2")
    out = {k: settings[k] for k in keep}
    if args.epoch_steps:
        out["patches_per_epoch"] = args.epoch_steps * out["batch_size"]
    return out


def recipe_callbacks(args: argparse.Namespace, minutes: float) -> list:
    """The wall-clock learning-rate schedule of the ``budget`` recipe (a fresh one per training)."""
    if args.recipe == "careamics":
        return []
    from jumpdenoise.bsd_schedule import PEAK_LR, WallClockCosine

    return [WallClockCosine(minutes * 60, peak_lr=PEAK_LR)]


def run_jumpdenoise(data: ImageSet, run_dir: Path, seed: int, args: argparse.Namespace, minutes: float
                    ) -> tuple[list, list, dict]:
    """Train with :func:`~jumpdenoise.train.arrays.train_on_arrays` for ``minutes``; denoise every image.

    Returns what predict writes (the network's output, its offset removed and blended with the raw
    image by the weights measured on the validation images, :mod:`jumpdenoise.quality.calibration`),
    the network's output alone (its offset removed), and the run's figures (steps, times, the gains
    estimated without truth).
    """
    import dataclasses

    from jumpdenoise.predict.arrays import denoise_array
    from jumpdenoise.predict.model import load_model, read_checkpoint
    from jumpdenoise.quality.calibration import apply_calibration
    from jumpdenoise.quality.gain import estimate_run_gain
    from jumpdenoise.quality.truth import camera_noise_models
    from jumpdenoise.train.arrays import train_on_arrays

    t = time.perf_counter()
    train_on_arrays(data.noisy, run_dir, channels=data.channels, val_images=split_val(data), epochs=100_000,
                    patch_size=64, seed=seed, n_val_patches=args.val_patches, callbacks=recipe_callbacks(args, minutes),
                    estimate=False,  # estimated per instrument unit below
                    trainer=trainer_settings(args, minutes * 60), **recipe_settings(args))
    train_s = time.perf_counter() - t
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    t = time.perf_counter()
    camera = camera_noise_models(Path(data.notes["truth_dir"])) if "truth_dir" in data.notes else {}
    model = load_model(run_dir, args.device, checkpoint="last")  # as CAREamist.predict for N2V
    tiled = {"overlap": None}
    written: list = [None] * len(data.noisy)
    network: list = [None] * len(data.noisy)
    estimated, estimate_s, predict_s = {}, 0.0, 0.0
    for unit, (held, members) in instrument_units(data).items():
        t = time.perf_counter()
        record = estimate_run_gain(run_dir, [data.noisy[i] for i in held], data.channels, noise_models=camera,
                                   seed=seed, checkpoint="last")
        estimate_s += time.perf_counter() - t
        calibrated = apply_calibration(model, record)  # the unit's output offset removed, its blend weights
        alone = dataclasses.replace(calibrated, blend=None)
        for i in members:
            tile = min(256, *data.noisy[i].shape[-2:])
            t = time.perf_counter()
            written[i] = denoise_array(calibrated, data.noisy[i], tile_size=tile, **tiled)
            predict_s += time.perf_counter() - t
            network[i] = denoise_array(alone, data.noisy[i], tile_size=tile, **tiled)
        estimated[unit] = {ch: {k: e[k] for k in ("gain_db", "blend", "output_offset", "network_gain_db",
                                                  "noise_source", "noise_variance", "reliable")}
                           for ch, e in record["channels"].items()}
    return written, network, {"train_s": round(train_s, 1), "steps": int(last["global_step"]),
                              "phase_split": model.phase_split,
                              "estimate_s": round(estimate_s, 1), "predict_s": round(predict_s, 1),
                              "estimated": estimated}


def run_careamics(data: ImageSet, jd_run: Path, work: Path, seed: int, args: argparse.Namespace, minutes: float
                  ) -> tuple[list, dict]:
    """``CAREamist.train`` with jumpdenoise's CAREamics configuration for ``minutes``; ``predict``."""
    import yaml
    from careamics import CAREamist

    from jumpdenoise.compute.threads import pinned_torch_threads

    cc = yaml.safe_load((jd_run / "careamics_config.yaml").read_text())
    cc["training_config"].setdefault("trainer_params", {}).update({
        "max_epochs": 100_000, "accelerator": args.device, "devices": 1, "precision": args.precision,
        "enable_progress_bar": False, "max_time": {"seconds": minutes * 60}})
    work.mkdir(parents=True, exist_ok=True)
    (work / "careamics_config.yaml").write_text(yaml.safe_dump(cc))
    careamist = CAREamist(work / "careamics_config.yaml", work_dir=work, enable_progress_bar=False,
                          callbacks=recipe_callbacks(args, minutes))
    stack = np.stack(data.noisy)
    tile = min(256, *stack.shape[-2:])
    with pinned_torch_threads():  # the torch threads jumpdenoise's training and prediction use
        t = time.perf_counter()
        careamist.train(train_data=stack, val_data=np.stack(split_val(data)))
        train_s = time.perf_counter() - t
        steps = int(careamist.trainer.global_step)
        t = time.perf_counter()
        pred, _ = careamist.predict(stack, data_type="array", axes="SCYX", tile_size=(tile, tile),
                                    tile_overlap=(48, 48), batch_size=8)  # N2V: the last checkpoint
    out = list(np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, *stack.shape[1:]) for p in pred]))
    return out, {"train_s": round(train_s, 1), "steps": steps, "predict_s": round(time.perf_counter() - t, 1)}


def evaluate_set(data: ImageSet, work: Path, args: argparse.Namespace) -> dict:
    """Raw scores once; each trainer ``--seeds`` times at equal budget."""
    from jumpdenoise.quality.blend import low_pass

    blurred = [np.stack([low_pass(plane) for plane in a]).astype(np.float32) for a in data.noisy]
    result = {"raw": over_seeds([score_images(data, [a.astype(np.float32) for a in data.noisy])]),
              "gaussian": over_seeds([score_images(data, blurred)]),
              "jumpdenoise": [], "jumpdenoise-network": [], "careamics": [], "estimates": []}
    for s in range(args.seeds):
        seed = args.seed + s
        written, network, careamics = (list(data.noisy) for _ in range(3))
        estimated, jd_info, ca_info = {}, [], []
        for group, members in training_groups(data).items():  # one model per microscope
            sub = subset(data, members)
            minutes = args.minutes * len(members) / len(data.noisy)
            jd_run = work / f"{data.name}-{group}-jd-{seed}"
            w, n, info = run_jumpdenoise(sub, jd_run, seed, args, minutes)
            estimated.update(info.pop("estimated"))
            out, c_info = run_careamics(sub, jd_run, work / f"{data.name}-{group}-ca-{seed}", seed, args, minutes)
            for k, i in enumerate(members):
                written[i], network[i], careamics[i] = w[k], n[k], out[k]
            jd_info.append({**info, "group": group})
            ca_info.append({**c_info, "group": group})
            shutil.rmtree(jd_run, ignore_errors=True)
            shutil.rmtree(work / f"{data.name}-{group}-ca-{seed}", ignore_errors=True)
        info = {"steps": sum(i["steps"] for i in jd_info), "models": jd_info}
        result["jumpdenoise"].append({**score_images(data, written), **info, "seed": seed})
        result["jumpdenoise-network"].append({**score_images(data, network), **info, "seed": seed})
        rows = {}
        for unit, (_, members) in instrument_units(data).items():
            truth_written, truth_network = true_gains(data, written, members), true_gains(data, network, members)
            offset_free = true_gains(data, written, members, offset_free=True)
            correlation = noise_neighbour_correlation(data, members)
            for ch, e in estimated[unit].items():  # labelled by channel (one unit) or by unit (FMD: one channel)
                label = ch if unit == data.name else unit
                rows[label] = {**e, "true_gain_db": truth_written[ch], "true_network_gain_db": truth_network[ch],
                               "true_gain_offset_free_db": offset_free[ch],
                               "noise_neighbour_correlation": correlation[ch]}
        result["estimates"].append(rows)
        splits = ", ".join(f"{i['group']} {i['phase_split']}" for i in jd_info)
        print(f"  {data.name} seed {seed}: jumpdenoise {result['jumpdenoise'][-1]['psnr']:.2f} dB "
              f"(network alone {result['jumpdenoise-network'][-1]['psnr']:.2f}; {info['steps']} steps; "
              f"phase split {splits})", flush=True)
        ca = {"steps": sum(i["steps"] for i in ca_info), "models": ca_info}
        result["careamics"].append({**score_images(data, careamics), **ca, "seed": seed})
        print(f"  {data.name} seed {seed}: CAREamist   {result['careamics'][-1]['psnr']:.2f} dB "
              f"({ca['steps']} steps)", flush=True)
    for m in ("jumpdenoise", "jumpdenoise-network", "careamics"):
        runs = result[m]
        result[m] = {**over_seeds(runs), "steps": [r["steps"] for r in runs]}
    return result


def print_estimates(name: str, res: dict) -> None:
    """The gains estimated without truth next to the true gains, per seed and channel."""
    print(f"\n{name}: gain estimated without truth vs true gain (dB), what predict writes | network alone")
    for seed_estimates in res["estimates"]:
        for ch, e in seed_estimates.items():
            print(f"  {ch:<8s} weights {e['blend'][0]:.2f}/{e['blend'][1]:.2f}  estimated {e['gain_db']:+6.2f} true "
                  f"{e['true_gain_db']:+6.2f} | estimated {e['network_gain_db']:+6.2f} true "
                  f"{e['true_network_gain_db']:+6.2f}  ({e['noise_source']} noise"
                  f"{'' if e.get('reliable', True) else ', unreliable fit'}; true gain without the captures' "
                  f"global offsets {e['true_gain_offset_free_db']:+6.2f}; noise neighbour correlation "
                  f"{e['noise_neighbour_correlation']:.3f})")
    reliable = [e for seed in res["estimates"] for e in seed.values() if e.get("reliable", True)]
    errors = [e["gain_db"] - e["true_gain_offset_free_db"] for e in reliable]
    if errors:
        print(f"  estimate vs the true gain without global offsets, reliable fits: median error "
              f"{np.median(np.abs(errors)):.2f} dB, worst {max(np.abs(errors)):.2f} dB, "
              f"{sum(abs(x) <= 1 for x in errors)} of {len(errors)} within 1 dB (diagnostic)")
    if len(errors) > 2:
        r = np.corrcoef(errors, [e["noise_neighbour_correlation"] for e in reliable])[0, 1]
        print(f"  correlation of the signed estimate error with the noise's neighbour correlation: {r:+.2f} "
              f"(diagnostic)")


def print_table(name: str, res: dict) -> None:
    """One row per method and group: PSNR, SSIM, bias (mean +- std over seeds)."""
    print(f"\n{name}: PSNR dB / SSIM / mean bias % (mean +- std over seeds)")
    groups = list(res["raw"]["groups"])
    print(f"{'method':<12s} {'group':<18s} {'PSNR':>15s} {'SSIM':>15s} {'bias %':>15s}")
    for m in METHODS:
        rows = [("mean", res[m])] + [(g, res[m]["groups"][g]) for g in groups]
        for g, r in rows:
            cells = " ".join(f"{r[k]['mean']:>8.3f}+-{r[k]['std']:<6.3f}" for k in ("psnr", "ssim", "bias_pct"))
            print(f"{m:<12s} {g:<18s} {cells}")
    if "steps" in res["jumpdenoise"]:
        print(f"training steps in the budget: jumpdenoise {res['jumpdenoise']['steps']}, "
              f"CAREamist {res['careamics']['steps']}")


def targets(results: dict) -> list[tuple[str, bool]]:
    """The issue's targets as (text, passed)."""
    lines = []
    for name, res in results.items():
        jd, ca, raw = (res[m] for m in ("jumpdenoise", "careamics", "raw"))
        errors = [abs(e["gain_db"] - e["true_gain_db"]) for seed in res.get("estimates", []) for e in seed.values()
                  if e.get("reliable", True)]
        flagged = sum(not e.get("reliable", True) for seed in res.get("estimates", []) for e in seed.values())
        if errors:
            text = (f"{name}: gain estimated without truth within 1 dB of the true gain where the noise fit is "
                    f"reliable (worst {max(errors):.2f} dB; {flagged} estimate(s) flagged unreliable)")
            lines.append((text, max(errors) <= 1))
        if "gaussian" in res:
            d_blur = jd["psnr"]["mean"] - res["gaussian"]["psnr"]["mean"]
            lines.append((f"{name}: jumpdenoise above a plain Gaussian blur ({d_blur:+.2f} dB)", d_blur > 0))
        d_ca, d_raw = jd["psnr"]["mean"] - ca["psnr"]["mean"], jd["psnr"]["mean"] - raw["psnr"]["mean"]
        lines.append((f"{name}: jumpdenoise >= CAREamist at equal wall time ({d_ca:+.2f} dB)", d_ca >= 0))
        if name == "fmd":
            lines.append((f"fmd: >= +7 dB over raw ({d_raw:+.2f} dB)", d_raw >= 7))
        if name == "low-light":
            lines.append((f"low-light: >= +6 dB over raw ({d_raw:+.2f} dB)", d_raw >= 6))
        if name == "jump":
            worst = min(jd["groups"][g]["psnr"]["mean"] - raw["groups"][g]["psnr"]["mean"] for g in raw["groups"])
            lines.append((f"jump: never worse than raw on any channel (worst {worst:+.2f} dB)", worst >= 0))
        bias = max(abs(v["bias_pct"]["mean"]) for v in jd["groups"].values())
        lines.append((f"{name}: |mean bias| <= 1 % per group (jumpdenoise, worst {bias:.2f} %)", bias <= 1))
    return lines


def write_results(args: argparse.Namespace, argv: list[str] | None, started: str, notes: dict,
                  results: dict) -> None:
    """``benchmarks/results/<--name>/quality.json`` (and ``--json``): settings, scores, targets."""
    summary = {"started": started, "argv": sys.argv[1:] if argv is None else argv, "device": args.device,
               "minutes": args.minutes, "seeds": args.seeds, "sets": notes, "results": results,
               "targets": [{"text": t, "pass": ok} for t, ok in targets(results)]}
    if args.name:
        out = ROOT / "benchmarks" / "results" / args.name
        out.mkdir(parents=True, exist_ok=True)
        (out / "quality.json").write_text(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="jump,low-light,fmd", help="comma list of jump, low-light, fmd")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--minutes", type=float, default=None, help="training budget per run (5 CPU, 2 GPU)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1, help="first training seed")
    parser.add_argument("--recipe", default="budget", choices=["budget", "careamics"],
                        help="training settings of both trainers (see recipe_settings)")
    parser.add_argument("--batch", type=int, default=32, help="batch of the careamics recipe")
    parser.add_argument("--epoch-steps", type=int, default=0,
                        help="jumpdenoise steps per epoch (validation, checkpoint; 0: one patch per patch area)")
    parser.add_argument("--val-patches", type=int, default=64, help="jumpdenoise validation patches")
    parser.add_argument("--rows", type=int, default=2, help="synthetic plate: rows of wells")
    parser.add_argument("--columns", type=int, default=2, help="synthetic plate: columns of wells")
    parser.add_argument("--fields", type=int, default=1, help="synthetic plate: fields per well")
    parser.add_argument("--size", type=int, default=512, help="synthetic plate: field side")
    parser.add_argument("--plate-seed", type=int, default=0)
    parser.add_argument("--fmd-root", type=Path, default=FMD_ROOT)
    parser.add_argument("--fmd-types", default="", help="comma list of FMD types (default: all 12)")
    parser.add_argument("--fmd-crop", type=int, default=0, help="score/train on the top-left N x N crop (0: all)")
    parser.add_argument("--name", default=None, help="results folder name under benchmarks/results/")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.minutes is None:
        args.minutes = 2.0 if args.device == "cuda" else 5.0
    sets = [s for s in args.sets.split(",") if s]
    bad = sorted(set(sets) - {"jump", "low-light", "fmd"})
    if bad:
        parser.error(f"--sets: unknown {bad}")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results: dict = {}
    notes: dict = {}
    with tempfile.TemporaryDirectory(prefix="jd-quality-", dir=args.workdir) as tmp:
        work = Path(tmp)
        for name in sets:
            t = time.perf_counter()
            if name == "fmd":
                data = load_fmd(args.fmd_root, [s for s in args.fmd_types.split(",") if s])
                if args.fmd_crop:
                    n = args.fmd_crop
                    data.noisy = [a[:, :n, :n] for a in data.noisy]
                    data.truth = [a[:, :n, :n] for a in data.truth]
            else:
                data = synthetic_set(name, work, rows=args.rows, columns=args.columns, fields=args.fields,
                                     size=args.size, seed=args.plate_seed)
            print(f"{name}: {len(data.noisy)} image(s) {data.noisy[0].shape}, budget {args.minutes:g} min per "
                  f"training, {args.seeds} seed(s)", flush=True)
            results[name] = evaluate_set(data, work, args)
            notes[name] = {**data.notes, "images": len(data.noisy), "shape": list(data.noisy[0].shape),
                           "seconds": round(time.perf_counter() - t, 1)}
            print_table(name, results[name])
            print_estimates(name, results[name])
            write_results(args, argv, started, notes, results)  # each set kept as soon as it is done
    lines = targets(results)
    print("\ntargets:")
    for text, ok in lines:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    write_results(args, argv, started, notes, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
