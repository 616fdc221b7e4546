"""Benchmark of N2V training throughput: jumpdenoise's pipeline vs plain ``CAREamist.train``.

Both train the seed configuration (``configs/n2v_jump.yaml``: CAREamics UNet depth 2,
32 initial channels, 4 independent channels (``--channels``), 64 x 64 patches, batch 32, XYFlip +
XYRandomRotate90, N2VManipulate 0.2 %) on the same noisy fields, in the same run (the last well
validates; every field is a scene of its own, see ``train_measures.build_data``):

- jumpdenoise: patches streamed lazily from an OME-Zarr plate (level 0) with the
  normalisation of the plate statistics (:func:`jumpdenoise.train.loop.fit`);
- CAREamics: ``CAREamist(config).train(train_data=array, val_data=array)`` on the same
  fields held in memory (CAREamics' fastest input; the same CAREamics configuration).

Throughput is patches per second over ``--steps`` training steps after ``--warmup``
steps (the model, the optimizer and N2V masking are CAREamics'; jumpdenoise changes where
the masking runs, the data pipeline, the memory format, CUDA graphs and the Lightning
wiring). ``--variants`` also times jumpdenoise with the ``train.experimental`` switches
(eager steps, channels-first) against the same baseline. After training, every run's network is
evaluated on the same validation patches with the same masks (fp32, eval mode; 256 patches masked
``--val-maskings`` times) and scored against the truth on the whole validation fields (PSNR): runs
of equal steps compare at equal validation loss. Both figures are also given for each network with its
output offset removed, as jumpdenoise's training removes it (``jumpdenoise.quality.calibration``; the
offset is measured without truth on validation fields): a constant shift of the whole output, random
from run to run, otherwise dominates both the loss and the PSNR. First, the two data pipelines alone (no model; ours with its N2V masking in the
workers, CAREamics masks on the device) are timed over ``--data-batches`` batches: the
headroom that decides the ratio on a fast GPU. Each side runs ``--repeats`` times,
alternately, repeat r with training seed ``--seed + r`` on both sides (the data stay the
same): the best rate of each side counts, and the validation losses are shown as mean and
range over the seeds. A table and the ratio jumpdenoise / CAREamics are printed last.
The data, the step timer, the common validation set and the PSNR against truth are in
``train_measures.py``.

Usage::

    python benchmarks/train.py                        # CPU
    python benchmarks/train.py --device cuda --precision bf16-mixed --workers 8 --steps 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from train_measures import CHANNELS, build_data, common_val_loss, common_val_set, make_timer, psnr_on_truth

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures

ROOT = Path(__file__).resolve().parents[1]


def seed_train_config(args: argparse.Namespace, plate: Path, workdir: Path, val_wells: list[str]):
    """The seed configuration, with the benchmark's device settings and validation wells."""
    from jumpdenoise.config import load_config

    return load_config(ROOT / "configs" / "n2v_jump.yaml", overrides={
        "paths": {"workdir": str(workdir), "raw_plate": str(plate), "run_dir": str(workdir / "run")},
        "train": {"epochs": 1, "n_val_patches": 32, "seed": args.seed, "val_wells": val_wells,
                  "channels": CHANNELS[:args.channels],
                  "patches_per_epoch": (args.warmup + args.steps + 2) * 32,
                  "trainer": {"accelerator": args.device, "devices": 1, "precision": args.precision,
                              "num_workers": args.workers, "enable_progress_bar": False}}})


#: Variant tokens of ``--variants`` (joined with ``+``) -> ``train.experimental`` settings. ``default`` is
#: the training as shipped; ``no-graphs`` its eager steps (what DDP and a failed graph capture run);
#: ``channels_first`` CAREamics' memory format; ``unfused`` CAREamics' Adam (``foreach``, not fused).
VARIANT_TOKENS = {"default": {}, "no-graphs": {"cuda_graphs": False}, "channels_first": {"channels_last": False},
                  "unfused": {"fused_adam": False}}


def variant_settings(name: str) -> dict:
    """``train.experimental`` settings of a variant name such as ``no-graphs+channels_first``."""
    settings: dict = {}
    for token in name.split("+"):
        if token not in VARIANT_TOKENS:
            raise SystemExit(f"unknown variant token {token!r}; choose from {sorted(VARIANT_TOKENS)}")
        settings.update(VARIANT_TOKENS[token])
    return settings


def run_jumpdenoise(cfg, args: argparse.Namespace, run_dir: Path, variant: str = "default",
                    val: tuple | None = None, run_until_s: float | None = None):
    """The timer of jumpdenoise's pipeline (plate on disk, lazy patches): rate, val_loss, graphs.

    ``run_until_s``: train on after the timed steps until that much training time (the
    epoch is made long enough), for the comparison at equal time.
    """
    import shutil

    from jumpdenoise.stages.train import build_training_setup
    from jumpdenoise.train.loop import fit, write_run_header

    shutil.rmtree(run_dir, ignore_errors=True)
    experimental = cfg.train.experimental.model_copy(update=variant_settings(variant))
    train = {"experimental": experimental}
    if run_until_s is not None:  # the stream draws the same first batches whatever the epoch length
        train["patches_per_epoch"] = cfg.train.patches_per_epoch * 20
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"run_dir": run_dir}),
                                 "train": cfg.train.model_copy(update=train)})
    setup = build_training_setup(cfg)
    write_run_header(setup)
    timer = make_timer(args.warmup, args.steps, cfg.train.batch_size, args.device == "cuda", val,
                       probe_every=args.probe_every, run_until_s=run_until_s)
    fit(setup, extra_callbacks=[timer])
    return timer


def run_careamics(cfg, args: argparse.Namespace, fields: dict, val_wells: list[str], work: Path,
                  val: tuple | None = None):
    """The timer of ``CAREamist.train`` with the same configuration and fields (in memory)."""
    from careamics import CAREamist

    from jumpdenoise.stages.train import build_training_setup

    setup = build_training_setup(cfg)
    cc = setup.careamics_config()
    cc.training_config.trainer_params.update({
        "max_epochs": 1, "accelerator": args.device, "devices": 1, "precision": args.precision,
        "limit_val_batches": 1, "enable_progress_bar": False})
    train = np.stack([a for (w, _), a in fields.items() if w not in val_wells])
    val_arr = np.stack([a for (w, _), a in fields.items() if w in val_wells])
    common = val
    timer = make_timer(args.warmup, args.steps, cfg.train.batch_size, args.device == "cuda", common)
    careamist = CAREamist(cc, work_dir=work, callbacks=[timer], enable_progress_bar=False)
    careamist.train(train_data=train, val_data=val_arr)
    return timer


def data_rates(cfg, fields: dict, val_wells: list[str], batches: int) -> tuple[float, float]:
    """patches/s of the two data pipelines alone (no model): ours vs CareamicsDataModule."""
    from careamics.lightning.data import CareamicsDataModule
    from careamics.models import get_model_constraints

    from jumpdenoise.stages.train import build_training_setup
    from jumpdenoise.train.careamics_config import augmentation_dicts
    from jumpdenoise.train.masking import LoaderMasking
    from jumpdenoise.train.module import PatchDataModule

    setup = build_training_setup(cfg)
    ts = setup.tc.trainer
    cc = setup.careamics_config()
    ours = PatchDataModule(setup.train_refs, setup.val_refs, setup.mean, setup.std, patch_size=setup.tc.patch_size,
                           batch_size=setup.tc.batch_size, patches_per_epoch=(batches + 2) * setup.tc.batch_size,
                           n_val_patches=8, seed=setup.tc.seed, augmentations=augmentation_dicts(setup.tc),
                           num_workers=ts.num_workers, persistent_workers=False, pin_memory=False,
                           masking=LoaderMasking(cc.algorithm_config.n2v_config.model_dump()))
    ours.setup("fit")
    train = np.stack([a for (w, _), a in fields.items() if w not in val_wells])
    val = np.stack([a for (w, _), a in fields.items() if w in val_wells])
    theirs = CareamicsDataModule(data_config=cc.data_config, train_data=train, val_data=val,
                                 model_constraints=get_model_constraints(cc.algorithm_config.model))
    theirs.setup("fit")
    rates = []
    loaders = (ours.train_dataloader(), theirs.train_dataloader())
    batches = max(1, min(batches, *(len(loader) - 1 for loader in loaders)))  # CAREamics: one epoch of the fields
    for loader in loaders:
        it = iter(loader)
        next(it)  # workers started, first batch
        t = time.perf_counter()
        for _ in range(batches):
            next(it)
        rates.append(batches * setup.tc.batch_size / (time.perf_counter() - t))
        del it
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="32-true", help="32-true or bf16-mixed (GPU)")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers (both sides)")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=2, help="training runs per side (0: data only)")
    parser.add_argument("--wells", type=int, default=3)
    parser.add_argument("--fields", type=int, default=2, help="fields per well")
    parser.add_argument("--size", type=int, default=1024, help="field side in pixels")
    parser.add_argument("--channels", type=int, default=len(CHANNELS), choices=range(1, len(CHANNELS) + 1),
                        help="channels trained (one independent UNet each): DNA, ER, RNA, AGP, the first N")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data-batches", type=int, default=20, help="batches timed for the data-only rates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default="default",
                        help="comma list of jumpdenoise variants, tokens joined by +: "
                             + ", ".join(VARIANT_TOKENS) + " (e.g. default,no-graphs,no-graphs+channels_first)")
    parser.add_argument("--probe-every", type=int, default=10,
                        help="jumpdenoise: validation loss every N steps (time to CAREamics' final loss; 0: off)")
    parser.add_argument("--val-maskings", type=int, default=8,
                        help="maskings of the 256 common validation patches (more: a less noisy validation loss)")
    parser.add_argument("--no-equal-time", dest="equal_time", action="store_false",
                        help="skip training jumpdenoise on to CAREamics' training time (PSNR at equal time)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.wells < 2:
        parser.error("--wells: at least 2 (the last well validates)")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        plate, fields, truths, val_wells = build_data(work, args.wells, args.fields, args.size, args.seed,
                                                    args.channels)
        print(f"data: {len(fields)} fields of {args.channels} x {args.size} x {args.size} uint16 "
              f"({time.perf_counter() - t:.1f} s to write), device {args.device}, precision {args.precision}, "
              f"{args.workers} workers, {torch.get_num_threads()} torch threads", flush=True)
        cfg = seed_train_config(args, plate, work, val_wells)
        import json

        from jumpdenoise.stages.train import build_training_setup

        d_ours, d_theirs = data_rates(cfg, fields, val_wells, args.data_batches)
        print(f"data pipeline only (no model): jumpdenoise {d_ours:.0f} patches/s, CareamicsDataModule "
              f"{d_theirs:.0f} patches/s, ratio {d_ours / d_theirs:.2f}x", flush=True)
        variants = args.variants.split(",")
        for v in variants:
            variant_settings(v)  # fail early on a typo
        val = common_val_set(cfg, maskings=args.val_maskings)
        setup0 = build_training_setup(cfg)
        raw_psnr = psnr_on_truth(None, setup0, fields, truths)[0]
        ours: dict[str, list] = {v: [] for v in variants}
        theirs: list = []
        for r in range(args.repeats):
            # each repeat its own training seed (network init, patches, masks), the same for both sides:
            # repeats are independent draws, so the validation losses show their spread
            cfg_r = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": args.seed + r})})
            ref_r = run_careamics(cfg_r, args, fields, val_wells, work / f"careamics{r}", val)  # the baseline first
            ref_r.psnr, ref_r.psnr_cal, shift = psnr_on_truth(ref_r.snapshot, setup0, fields, truths)
            ref_r.val_loss_cal = common_val_loss(ref_r.snapshot, val, shift=shift)
            theirs.append(ref_r)                                                            # survives a timeout
            print(f"repeat {r}: CAREamist.train {ref_r.rate:.1f} patches/s, val_loss {ref_r.val_loss:.5f}, "
                  f"{ref_r.train_s:.1f} s, PSNR {ref_r.psnr:.2f} dB; offset removed: val_loss {ref_r.val_loss_cal:.5f}, "
                  f"PSNR {ref_r.psnr_cal:.2f} dB (raw {raw_psnr:.2f})", flush=True)
            for v in variants:
                try:
                    timer = run_jumpdenoise(cfg_r, args, work / f"run{r}-{v}", v, val,
                                            run_until_s=ref_r.train_s if args.equal_time else None)
                except Exception as exc:  # noqa: BLE001 - one failing variant leaves the others
                    print(f"repeat {r}: jumpdenoise [{v}] FAILED: {type(exc).__name__}: {exc}", flush=True)
                    continue
                timer.psnr, timer.psnr_cal, shift = psnr_on_truth(timer.snapshot, setup0, fields, truths)
                timer.val_loss_cal = common_val_loss(timer.snapshot, val, shift=shift)
                timer.ref_s, timer.reach_s = ref_r.train_s, timer.time_to(ref_r.val_loss)
                ours[v].append(timer)
                reach = "never" if timer.reach_s is None else f"{timer.reach_s:.1f} s"
                print(f"repeat {r}: jumpdenoise [{v}] {timer.rate:.1f} patches/s, val_loss {timer.val_loss:.5f}"
                      f"{', CUDA graphs' if timer.graphs else ''}; CAREamics' final val_loss reached: {reach} "
                      f"(probes every {args.probe_every} steps); PSNR at {timer.train_s:.1f} s {timer.psnr:.2f} dB, "
                      f"offset removed: val_loss {timer.val_loss_cal:.5f}, PSNR {timer.psnr_cal:.2f} dB ({timer.count} steps)",
                      flush=True)
        if not theirs:
            return
        best = lambda timers: max(timers, key=lambda t: t.rate)
        losses = lambda timers: [t.val_loss for t in timers]
        ref = best(theirs)
        steps = args.warmup + args.steps
        print(f"\nafter {steps} steps each (same validation patches and masks, fp32 eval; patches/s: the best "
              f"repeat; val_loss: the mean and range over {args.repeats} training seed(s)):")
        print(f"{'run':<42s} {'patches/s':>10s} {'ratio':>7s} {'val_loss':>9s} {'range':>17s}")
        print(f"{'CAREamist.train':<42s} {ref.rate:>10.1f} {1.0:>6.2f}x {np.mean(losses(theirs)):>9.5f} "
              f"{min(losses(theirs)):>8.5f}-{max(losses(theirs)):.5f}")
        table = {}
        for v in variants:
            if ours[v]:
                t, vl = best(ours[v]), losses(ours[v])
                table[v] = {"patches_per_s": round(t.rate, 1), "ratio": round(t.rate / ref.rate, 3),
                            "val_loss": round(t.val_loss, 6), "val_loss_mean": round(float(np.mean(vl)), 6),
                            "val_losses": [round(x, 6) for x in vl], "cuda_graphs": t.graphs,
                            "val_loss_vs_careamics_pct": [round(100 * (a / b.val_loss - 1), 2)
                                                          for a, b in zip(vl, theirs)],
                            "careamics_train_s": [round(x.ref_s, 2) for x in ours[v]],
                            "seconds_to_careamics_loss": [None if x.reach_s is None else round(x.reach_s, 2)
                                                          for x in ours[v]],
                            "psnr_equal_time": [round(x.psnr, 3) for x in ours[v]],
                            "psnr_offset_removed_equal_time": [round(x.psnr_cal, 3) for x in ours[v]],
                            "val_losses_offset_removed": [round(x.val_loss_cal, 6) for x in ours[v]],
                            "val_loss_offset_removed_vs_careamics_pct": [
                                round(100 * (a.val_loss_cal / b.val_loss_cal - 1), 2) for a, b in zip(ours[v], theirs)]}
                reached = [x.ref_s / x.reach_s for x in ours[v] if x.reach_s]
                table[v]["time_to_equal_loss_speedup"] = round(float(np.mean(reached)), 3) if reached else None
                print(f"{'jumpdenoise [' + v + ']':<42s} {t.rate:>10.1f} {t.rate / ref.rate:>6.2f}x "
                      f"{np.mean(vl):>9.5f} {min(vl):>8.5f}-{max(vl):.5f}")
                gap, gap_cal = table[v]["val_loss_vs_careamics_pct"], table[v]["val_loss_offset_removed_vs_careamics_pct"]
                print(f"  val_loss vs CAREamics, same seed: {np.mean(gap):+.2f} % (per seed {gap}), both networks' "
                      f"offsets removed {np.mean(gap_cal):+.2f} % (per seed {gap_cal}); "
                      f"time to CAREamics' final val_loss: {table[v]['time_to_equal_loss_speedup'] or 'not reached'}"
                      f"{'x faster' if reached else ''} ({len(reached)}/{len(ours[v])} seeds); PSNR at equal time "
                      f"{np.mean(table[v]['psnr_equal_time']):.2f} dB vs CAREamist "
                      f"{np.mean([x.psnr for x in theirs]):.2f} dB, offsets removed "
                      f"{np.mean(table[v]['psnr_offset_removed_equal_time']):.2f} vs "
                      f"{np.mean([x.psnr_cal for x in theirs]):.2f} dB (raw {raw_psnr:.2f} dB)")
        summary = {"device": args.device, "precision": args.precision, "workers": args.workers,
                   "steps": args.steps, "warmup": args.warmup, "batch": 32, "patch": 64, "channels": args.channels,
                   "careamics_patches_per_s": round(ref.rate, 1), "careamics_val_loss": round(ref.val_loss, 6),
                   "careamics_val_losses": [round(x, 6) for x in losses(theirs)], "seeds": args.repeats,
                   "careamics_psnr": [round(x.psnr, 3) for x in theirs], "raw_psnr": round(raw_psnr, 3),
                   "careamics_psnr_offset_removed": [round(x.psnr_cal, 3) for x in theirs],
                   "careamics_val_losses_offset_removed": [round(x.val_loss_cal, 6) for x in theirs],
                   "careamics_train_s": [round(x.train_s, 2) for x in theirs],
                   "variants": table, "data_only_jumpdenoise_patches_per_s": round(d_ours),
                   "data_only_careamics_patches_per_s": round(d_theirs)}
        print(json.dumps(summary))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=1))
        if variants[0] in table:
            print(f"ratio jumpdenoise [{variants[0]}] / CAREamist.train: {table[variants[0]]['ratio']:.2f}x")

if __name__ == "__main__":
    main()
