"""Benchmark of N2V training throughput: jumpdenoise's pipeline vs plain ``CAREamist.train``.

Both train the seed configuration (``configs/n2v_jump.yaml``: CAREamics UNet depth 2,
32 initial channels, 4 independent channels, 64 x 64 patches, batch 32, XYFlip +
XYRandomRotate90, N2VManipulate 0.2 %) on the same noisy fields, in the same run:

- jumpdenoise: patches streamed lazily from an OME-Zarr plate (level 0) with the
  normalisation of the plate statistics (:func:`jumpdenoise.train.loop.fit`);
- CAREamics: ``CAREamist(config).train(train_data=array, val_data=array)`` on the same
  fields held in memory (CAREamics' fastest input; the same CAREamics configuration).

Throughput is patches per second over ``--steps`` training steps after ``--warmup``
steps (the model, the optimizer and N2V masking are CAREamics'; jumpdenoise changes where
the masking runs, the data pipeline, the memory format, CUDA graphs and the Lightning
wiring). ``--variants`` also times jumpdenoise with the ``train.experimental`` switches
(eager steps, channels-first) against the same baseline. After training, every run's network is evaluated on the same validation patches
with the same masks (fp32, eval mode): runs of equal steps compare at equal validation
loss. First, the two data pipelines alone (no model; ours with its N2V masking in the
workers, CAREamics masks on the device) are timed over ``--data-batches`` batches: the
headroom that decides the ratio on a fast GPU. Each side runs ``--repeats`` times,
alternately, repeat r with training seed ``--seed + r`` on both sides (the data stay the
same): the best rate of each side counts, and the validation losses are shown as mean and
range over the seeds. A table and the ratio jumpdenoise / CAREamics are printed last.

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.fixtures

ROOT = Path(__file__).resolve().parents[1]


def make_timer(warmup: int, steps: int, batch: int, sync_cuda: bool, val: tuple | None = None, *,
               probe_every: int = 0, run_until_s: float | None = None):
    """A Lightning callback timing training steps ``warmup`` .. ``warmup + steps``.

    With ``val`` (``(masked, original, mask)`` CPU tensors), the trained network's N2V loss
    on them is measured after ``warmup + steps`` steps (eval mode, fp32): the same validation
    set and masks for every run, so runs of equal steps compare at equal validation loss.
    ``probe_every`` > 0 also measures it every that many steps, with the training time
    (from the start of training, the probes' own time left out) in :attr:`curve`.
    ``run_until_s``: keep training after ``warmup + steps`` until that much training time has
    passed, then keep the network's weights in :attr:`snapshot` (the comparison at equal time).
    """
    import copy

    import lightning.pytorch as pl
    import torch

    def sync() -> None:
        if sync_cuda:
            torch.cuda.synchronize()

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.t0 = self.t1 = None
            self.p0 = self.p1 = 0.0
            self.count = 0
            self.val_loss = float("nan")
            self.graphs = False
            self.start = None
            self.paused = 0.0  # seconds spent in probes, left out of the training time
            self.curve: list[tuple[float, int, float]] = []
            self.train_s = float("nan")
            self.snapshot = None

        def elapsed(self) -> float:
            return time.perf_counter() - self.start - self.paused

        def on_train_start(self, trainer, pl_module) -> None:
            self.start = time.perf_counter()

        def probe(self, pl_module) -> float:
            t = time.perf_counter()
            loss = common_val_loss(pl_module.model, val)
            self.curve.append((round(self.train_s, 3), self.count, loss))
            self.paused += time.perf_counter() - t
            return loss

        def on_train_batch_end(self, trainer, pl_module, outputs, batch_, batch_idx) -> None:
            self.count += 1
            end = warmup + steps
            if self.count in (warmup, end) or probe_every or run_until_s:
                sync()
            now = time.perf_counter()
            self.train_s = self.elapsed()
            if self.count == warmup:
                self.t0, self.p0 = now, self.paused
            if self.count == end:
                self.t1, self.p1 = now, self.paused
                if val is not None:
                    self.val_loss = self.probe(pl_module)
            elif val is not None and probe_every and self.count % probe_every == 0:
                self.probe(pl_module)
            if self.count >= end and (run_until_s is None or self.train_s >= run_until_s):
                if run_until_s is not None:
                    self.snapshot = copy.deepcopy(pl_module.model).eval()
                trainer.should_stop = True

        def on_train_end(self, trainer, pl_module) -> None:
            # The data ran out before warmup + steps (a short CAREamics epoch): time the steps done.
            if self.t0 is not None and self.t1 is None and self.count > warmup:
                sync()
                self.t1, self.p1 = time.perf_counter(), self.paused
                if val is not None:
                    self.val_loss = self.probe(pl_module)
            self.graphs = any(g is not None for g in getattr(pl_module, "__dict__", {}).get("_graphs", {}).values())
            if self.snapshot is None:
                self.snapshot = copy.deepcopy(pl_module.model).eval()

        @property
        def rate(self) -> float:
            if self.t0 is None or self.t1 is None:
                return float("nan")
            done = min(steps, self.count - warmup)
            if done < steps:
                print(f"  (only {done} of {steps} timed steps: the epoch ended first)", flush=True)
            return done * batch / (self.t1 - self.t0 - (self.p1 - self.p0))

        def time_to(self, loss: float) -> float | None:
            """Training seconds until the first probe at or below ``loss`` (None: never)."""
            return next((t for t, _, v in self.curve if v <= loss), None)

    return StepTimer()


def common_val_loss(model, val: tuple, batch: int = 64) -> float:
    """N2V loss of ``model`` (eval mode, fp32) on fixed masked validation patches."""
    import torch
    from careamics.losses import n2v_loss

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = weight = 0.0
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        for i in range(0, len(val[0]), batch):
            masked, original, mask = (t[i:i + batch].to(device) for t in val)
            pred = model(masked.contiguous(memory_format=torch.channels_last)
                         if next(model.parameters()).is_contiguous(memory_format=torch.channels_last) else masked)
            n = float(mask.sum())
            total += float(n2v_loss(pred.float(), original.float(), mask)) * n
            weight += n
    model.train(was_training)
    return total / max(weight, 1.0)


def common_val_set(cfg, n: int = 256) -> tuple:
    """Fixed validation patches of the setup's validation fields, masked once (CAREamics' masking)."""
    import torch

    from jumpdenoise.stages.train import build_training_setup
    from jumpdenoise.train.masking import LoaderMasking
    from jumpdenoise.train.patches import val_patches

    setup = build_training_setup(cfg)
    x = torch.from_numpy(val_patches(setup.val_refs, setup.mean, setup.std, n=n, patch_size=setup.tc.patch_size, seed=99))
    n2v = setup.careamics_config().algorithm_config.n2v_config.model_dump()
    return tuple(LoaderMasking(n2v)(x, seed=99))


def build_data(workdir: Path, n_wells: int, n_fields: int, size: int, seed: int) -> tuple[Path, dict, dict]:
    """Write the noisy plate; return it, its fields in memory and their truths (expected values).

    At most 8 clean scenes are drawn (drawing one takes seconds at 1024^2: large Gaussian
    blurs); every field gets one of them, rotated, with its own fresh noise.
    """
    from tests.fixtures.plates import noisy_field, write_plate

    channels = ["DNA", "ER", "RNA", "AGP"]
    wells = [f"{'ABCDEFGHIJKLMNOP'[i // 24]}{i % 24 + 1:02d}" for i in range(n_wells)]
    keys = [(w, f) for w in wells for f in range(n_fields)]
    cells = int(40 * (size / 256) ** 2)
    scenes = [noisy_field(4, size, seed + 10 * i, n_cells=cells)[1] for i in range(min(8, len(keys)))]
    fields, truths = {}, {}
    for i, key in enumerate(keys):
        rng = np.random.default_rng([seed, i])
        clean = np.rot90(scenes[i % len(scenes)], k=(i // len(scenes)) % 4, axes=(-2, -1))
        signal = rng.poisson(np.maximum(clean - 300, 0) * 2.0) / 2.0  # 20 photons per 10 units, as noisy_field
        fields[key] = np.clip(300 + signal + rng.normal(0, 30.0, clean.shape), 0, 65535).astype(np.uint16)
        truths[key] = np.maximum(clean, 300).astype(np.float32)  # E[field] (the clip at 0 never binds)
    return write_plate(workdir / "bench.zarr", fields, channels, overwrite=True), fields, truths


def psnr_on_truth(model, setup, fields: dict, truths: dict, crop: int = 256) -> float:
    """Mean PSNR (dB, :func:`jumpdenoise.quality.metrics.score`) of ``model`` on the validation
    fields' centre ``crop`` x ``crop`` against their truth; ``model=None``: of the raw fields."""
    import torch

    from jumpdenoise.quality.metrics import score

    val_wells = set(setup.split["val_wells"])
    mean = np.asarray(setup.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(setup.std, np.float32).reshape(-1, 1, 1)
    scores = []
    for key, noisy in fields.items():
        if key[0] not in val_wells:
            continue
        y0, x0 = (noisy.shape[-2] - crop) // 2, (noisy.shape[-1] - crop) // 2
        window = (slice(None), slice(y0, y0 + crop), slice(x0, x0 + crop))
        image = noisy[window].astype(np.float32)
        if model is not None:
            device = next(model.parameters()).device
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                x = torch.from_numpy((image - mean) / std)[None].to(device)
                image = model.eval()(x)[0].float().cpu().numpy() * std + mean
        scores += [score(image[c], truths[key][window][c])["psnr"] for c in range(image.shape[0])]
    return float(np.mean(scores))


def seed_train_config(args: argparse.Namespace, plate: Path, workdir: Path):
    """The seed configuration, with the benchmark's device settings."""
    from jumpdenoise.config import load_config

    return load_config(ROOT / "configs" / "n2v_jump.yaml", overrides={
        "paths": {"workdir": str(workdir), "raw_plate": str(plate), "run_dir": str(workdir / "run")},
        "train": {"epochs": 1, "n_val_patches": 32, "seed": args.seed,
                  "patches_per_epoch": (args.warmup + args.steps + 2) * 32,
                  "trainer": {"accelerator": args.device, "devices": 1, "precision": args.precision,
                              "num_workers": args.workers, "enable_progress_bar": False}}})


#: Variant tokens of ``--variants`` (joined with ``+``) -> ``train.experimental`` settings. ``default`` is
#: the training as shipped; ``no-graphs`` its eager steps (what DDP and a failed graph capture run);
#: ``channels_first`` CAREamics' memory format.
VARIANT_TOKENS = {"default": {}, "no-graphs": {"cuda_graphs": False}, "channels_first": {"channels_last": False}}


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
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--data-batches", type=int, default=20, help="batches timed for the data-only rates")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variants", default="default",
                        help="comma list of jumpdenoise variants, tokens joined by +: "
                             + ", ".join(VARIANT_TOKENS) + " (e.g. default,no-graphs,no-graphs+channels_first)")
    parser.add_argument("--probe-every", type=int, default=10,
                        help="jumpdenoise: validation loss every N steps (time to CAREamics' final loss; 0: off)")
    parser.add_argument("--no-equal-time", dest="equal_time", action="store_false",
                        help="skip training jumpdenoise on to CAREamics' training time (PSNR at equal time)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        plate, fields, truths = build_data(work, args.wells, args.fields, args.size, args.seed)
        print(f"data: {len(fields)} fields of 4 x {args.size} x {args.size} uint16 "
              f"({time.perf_counter() - t:.1f} s to write), device {args.device}, precision {args.precision}, "
              f"{args.workers} workers, {torch.get_num_threads()} torch threads", flush=True)
        cfg = seed_train_config(args, plate, work)
        import json

        from jumpdenoise.stages.train import build_training_setup

        val_wells = build_training_setup(cfg).split["val_wells"]
        d_ours, d_theirs = data_rates(cfg, fields, val_wells, args.data_batches)
        print(f"data pipeline only (no model): jumpdenoise {d_ours:.0f} patches/s, CareamicsDataModule "
              f"{d_theirs:.0f} patches/s, ratio {d_ours / d_theirs:.2f}x", flush=True)
        variants = args.variants.split(",")
        for v in variants:
            variant_settings(v)  # fail early on a typo
        val = common_val_set(cfg)
        setup0 = build_training_setup(cfg)
        raw_psnr = psnr_on_truth(None, setup0, fields, truths)
        ours: dict[str, list] = {v: [] for v in variants}
        theirs: list = []
        for r in range(args.repeats):
            # each repeat its own training seed (network init, patches, masks), the same for both sides:
            # repeats are independent draws, so the validation losses show their spread
            cfg_r = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": args.seed + r})})
            ref_r = run_careamics(cfg_r, args, fields, val_wells, work / f"careamics{r}", val)  # the baseline first
            ref_r.psnr = psnr_on_truth(ref_r.snapshot, setup0, fields, truths)
            theirs.append(ref_r)                                                            # survives a timeout
            print(f"repeat {r}: CAREamist.train {ref_r.rate:.1f} patches/s, val_loss {ref_r.val_loss:.5f}, "
                  f"{ref_r.train_s:.1f} s, PSNR {ref_r.psnr:.2f} dB (raw {raw_psnr:.2f})", flush=True)
            for v in variants:
                try:
                    timer = run_jumpdenoise(cfg_r, args, work / f"run{r}-{v}", v, val,
                                            run_until_s=ref_r.train_s if args.equal_time else None)
                except Exception as exc:  # noqa: BLE001 - one failing variant leaves the others
                    print(f"repeat {r}: jumpdenoise [{v}] FAILED: {type(exc).__name__}: {exc}", flush=True)
                    continue
                timer.psnr = psnr_on_truth(timer.snapshot, setup0, fields, truths)
                timer.ref_s, timer.reach_s = ref_r.train_s, timer.time_to(ref_r.val_loss)
                ours[v].append(timer)
                reach = "never" if timer.reach_s is None else f"{timer.reach_s:.1f} s"
                print(f"repeat {r}: jumpdenoise [{v}] {timer.rate:.1f} patches/s, val_loss {timer.val_loss:.5f}"
                      f"{', CUDA graphs' if timer.graphs else ''}; CAREamics' final val_loss reached: {reach} "
                      f"(probes every {args.probe_every} steps); PSNR at {timer.train_s:.1f} s {timer.psnr:.2f} dB "
                      f"({timer.count} steps)", flush=True)
        if not theirs:
            return
        best = lambda timers: max(timers, key=lambda t: t.rate)  # noqa: E731
        losses = lambda timers: [t.val_loss for t in timers]  # noqa: E731
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
                            "psnr_equal_time": [round(x.psnr, 3) for x in ours[v]]}
                reached = [x.ref_s / x.reach_s for x in ours[v] if x.reach_s]
                table[v]["time_to_equal_loss_speedup"] = round(float(np.mean(reached)), 3) if reached else None
                print(f"{'jumpdenoise [' + v + ']':<42s} {t.rate:>10.1f} {t.rate / ref.rate:>6.2f}x "
                      f"{np.mean(vl):>9.5f} {min(vl):>8.5f}-{max(vl):.5f}")
                gap = table[v]["val_loss_vs_careamics_pct"]
                print(f"  val_loss vs CAREamics, same seed: {np.mean(gap):+.2f} % (per seed {gap}); "
                      f"time to CAREamics' final val_loss: {table[v]['time_to_equal_loss_speedup'] or 'not reached'}"
                      f"{'x faster' if reached else ''} ({len(reached)}/{len(ours[v])} seeds); PSNR at equal time "
                      f"{np.mean(table[v]['psnr_equal_time']):.2f} dB vs CAREamist "
                      f"{np.mean([x.psnr for x in theirs]):.2f} dB (raw {raw_psnr:.2f} dB)")
        summary = {"device": args.device, "precision": args.precision, "workers": args.workers,
                   "steps": args.steps, "warmup": args.warmup, "batch": 32, "patch": 64, "channels": 4,
                   "careamics_patches_per_s": round(ref.rate, 1), "careamics_val_loss": round(ref.val_loss, 6),
                   "careamics_val_losses": [round(x, 6) for x in losses(theirs)], "seeds": args.repeats,
                   "careamics_psnr": [round(x.psnr, 3) for x in theirs], "raw_psnr": round(raw_psnr, 3),
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
