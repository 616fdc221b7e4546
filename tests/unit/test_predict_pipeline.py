"""Prediction pipeline pieces: device normalisation, the comparison partial, writer processes."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from jumpdenoise.predict.compare import field_comparison, noise_sigma

CHANNELS = ("DNA", "ER")


def identity_model():
    import torch

    from jumpdenoise.predict.model import LoadedModel

    conv = torch.nn.Conv2d(2, 2, 1, groups=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    return LoadedModel(module=conv.eval(), channels=list(CHANNELS), mean=np.array([412.37, 97.1]),
                       std=np.array([151.3, 3.7]), careamics_config={}, source=Path("identity"), _receptive_field=0)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8", "float32", "float64", "int32"])
def test_upload_normalises_bit_for_bit_like_numpy(dtype: str, device: str) -> None:
    import torch

    from jumpdenoise.predict.engine import Predictor
    from jumpdenoise.predict.normalization import normalize

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = identity_model()
    model.module.to(device)
    rng = np.random.default_rng(1)
    raw = (rng.gamma(2.0, 300.0, (2, 67, 45)) * (1 if dtype != "uint8" else 0.3)).astype(dtype)
    before = raw.copy()
    x = Predictor(model, overlap=0).upload(raw)
    assert x.device.type == device
    got = x.cpu().numpy()
    expected = normalize(raw, model.mean, model.std)
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert np.array_equal(raw, before)  # the caller's array is untouched (float32 shares memory)


def _reference(raw: np.ndarray, den: np.ndarray) -> dict:
    """The comparison computed the plain way (float64 sums, numpy.median)."""
    def sigma(a: np.ndarray) -> float:
        a = a.astype(np.float64)
        h, w = a.shape
        y0, x0 = max(0, (h - 512) // 2), max(0, (w - 512) // 2)
        a = a[y0:y0 + 512, x0:x0 + 512]
        hp = (a[:-2, :-2] + a[:-2, 2:] + a[2:, :-2] + a[2:, 2:]
              - 2 * (a[:-2, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:] + a[2:, 1:-1]) + 4 * a[1:-1, 1:-1])
        return 1.4826 * np.median(np.abs(hp - np.median(hp))) / 6

    r, d = raw.astype(np.float64), den.astype(np.float64)
    return {"cmp.count": np.full(len(raw), raw[0].size, float), "cmp.raw_sum": r.sum(axis=(1, 2)),
            "cmp.raw_sumsq": (r * r).sum(axis=(1, 2)), "cmp.den_sum": d.sum(axis=(1, 2)),
            "cmp.den_sumsq": (d * d).sum(axis=(1, 2)), "cmp.raw_noise": np.array([sigma(c) for c in raw]),
            "cmp.den_noise": np.array([sigma(c) for c in den])}


@pytest.mark.parametrize("shape", [(2, 130, 141), (2, 600, 531)])
def test_field_comparison_matches_the_plain_computation(shape: tuple) -> None:
    from jumpdenoise.compute.stats import field_partial

    rng = np.random.default_rng(7)
    raw = rng.poisson(300, shape).astype(np.uint16) + np.uint16(100)
    den = (raw * np.float32(0.8) + rng.normal(0, 2, shape)).astype(np.float32)
    want = _reference(raw, den)
    for got in (field_comparison(raw, den), field_comparison(raw, den, field_partial(den, CHANNELS))):
        assert set(got) == set(want)
        for key in ("cmp.count", "cmp.raw_sum", "cmp.raw_sumsq"):  # integers: exact
            assert np.array_equal(got[key], want[key]), key
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=2e-6, err_msg=key)
    # odd pixel count in the crop (a median of one middle value) and a non-finite pixel
    odd = den[0, :129, :129].copy()
    assert noise_sigma(odd) == pytest.approx(_reference(odd[None], odd[None])["cmp.raw_noise"][0], rel=2e-6)
    odd[60, 60] = np.nan
    assert np.isnan(noise_sigma(odd))


@dataclass(frozen=True)
class RecordingWriter:
    """Writes ``raw``, ``pred`` and whether torch is imported to ``folder/<key>.npz``; fails on key 'bad'."""

    folder: str

    def __call__(self, key, raw, pred) -> None:
        if key == "bad":
            raise ValueError(f"cannot write field {key}")
        np.savez(Path(self.folder) / f"{key}.npz", raw=raw, pred=pred, torch="torch" in sys.modules,
                 pid=os.getpid())
        return float(pred.sum())


def _shm_exists(name: str) -> bool:
    return Path("/dev/shm", name.lstrip("/")).exists()


def test_writer_processes_write_report_and_clean_up(tmp_path: Path) -> None:
    from jumpdenoise.predict.writers import WriterProcesses

    pool = WriterProcesses(2, 3, ((2, 5, 4), np.uint16), ((2, 5, 4), np.float32))
    name, procs = pool._shm.name, list(pool._procs)
    results: list = []
    try:
        for i, key in enumerate(["f0", "bad", "f2", "f3", "f4"]):
            slot = pool.acquire(lambda k, e, v: results.append((k, e, v)))
            raw, pred = pool.views(slot)
            raw[...] = i
            pred[...] = i + 0.5
            del raw, pred
            pool.submit(slot, key, RecordingWriter(str(tmp_path)))
        pool.wait_all(lambda k, e, v: results.append((k, e, v)))
    finally:
        pool.close()
    assert sorted(k for k, _, _ in results) == ["bad", "f0", "f2", "f3", "f4"]
    assert {k: v for k, _, v in results} == {"bad": None, "f0": 2 * 5 * 4 * 0.5, "f2": 40 * 2.5, "f3": 40 * 3.5,
                                             "f4": 40 * 4.5}  # what the writer returned
    errors = {k: e for k, e, _ in results if e is not None}
    assert list(errors) == ["bad"] and isinstance(errors["bad"], ValueError) and "field bad" in str(errors["bad"])
    for i, key in [(0, "f0"), (2, "f2"), (4, "f4")]:
        with np.load(tmp_path / f"{key}.npz") as z:
            assert (z["raw"] == i).all() and z["raw"].dtype == np.uint16 and (z["pred"] == i + 0.5).all()
            assert not z["torch"] and int(z["pid"]) != os.getpid()  # no CUDA-capable import in writers
    assert not any(p.is_alive() for p in procs) and not _shm_exists(name)


def _run(tmp_path: Path, write_processes: int, on_done=None, read=None, writer_pool=None):
    from jumpdenoise.predict.engine import Predictor, run_fields

    rng = np.random.default_rng(3)
    fields = {f"k{i}": rng.integers(0, 4000, (2, 40, 36)).astype(np.uint16) for i in range(7)}
    out = tmp_path / f"out{write_processes}"
    out.mkdir()
    report = run_fields(Predictor(identity_model(), overlap=0), list(fields) + ["missing"],
                        read or fields.__getitem__, RecordingWriter(str(out)), write_processes=write_processes,
                        on_done=on_done, writer_pool=writer_pool)
    return fields, out, report


def test_run_fields_threads_and_processes_give_the_same_fields(tmp_path: Path) -> None:
    import multiprocessing as mp

    for wp in (0, 2):
        fields, out, report = _run(tmp_path, wp)
        assert report.done == list(fields)  # in input order
        assert [(f.key, f.stage, type(f.error)) for f in report.failures] == [("missing", "read", KeyError)]
        for key, raw in fields.items():
            with np.load(out / f"{key}.npz") as z:
                assert np.array_equal(z["raw"], raw)
                np.testing.assert_allclose(z["pred"], raw, rtol=1e-6, atol=1e-3)  # identity network
    a = {k: np.load(tmp_path / "out0" / f"{k}.npz")["pred"] for k in fields}
    b = {k: np.load(tmp_path / "out2" / f"{k}.npz")["pred"] for k in fields}
    assert all(np.array_equal(a[k], b[k]) for k in fields)
    assert not [p for p in mp.active_children() if p.name.startswith("jd-writer")]  # a call's own pool is stopped


def test_a_given_writer_pool_is_kept_for_the_next_call(tmp_path: Path) -> None:
    from jumpdenoise.predict.writers import WriterPool

    pool = WriterPool()
    try:
        _run(tmp_path, 2, writer_pool=pool)
        first = pool.processes
        assert first is not None and first.alive()
        (tmp_path / "out2").rename(tmp_path / "first")
        _run(tmp_path, 2, writer_pool=pool)
        assert pool.processes is first  # same settings and field shape: the same writers
    finally:
        pool.close()
    assert pool.processes is None and not first.alive()


def test_interrupt_stops_writer_processes_and_frees_shared_memory(tmp_path: Path) -> None:
    from jumpdenoise.predict.writers import WriterPool

    seen: list = []
    pool = WriterPool()

    def interrupt(key) -> None:
        seen.append((pool.processes._shm.name, list(pool.processes._procs)))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, 2, on_done=interrupt, writer_pool=pool)
    name, procs = seen[0]
    assert pool.processes is None and not any(p.is_alive() for p in procs) and not _shm_exists(name)


def test_write_processes_setting() -> None:
    from pydantic import ValidationError

    from jumpdenoise.compute.threads import cpu_threads
    from jumpdenoise.config.predict import PredictConfig
    from jumpdenoise.predict.writers import resolve_write_processes

    assert PredictConfig().experimental.write_processes == "auto"
    assert PredictConfig(experimental={"write_processes": 3}).experimental.write_processes == 3
    for bad in (-1, 65, "many"):
        with pytest.raises(ValidationError, match="write_processes"):
            PredictConfig(experimental={"write_processes": bad})
    with pytest.raises(ValidationError, match="predict.write_processes: a benchmark-only switch"):
        PredictConfig(write_processes=3)
    assert resolve_write_processes("auto", "cpu") == 0 and resolve_write_processes(5, "cpu") == 5
    n = cpu_threads()
    assert resolve_write_processes("auto", "cuda") == (min(8, n - 2) if n >= 4 else 0)


def test_io_threads_setting() -> None:
    import os

    from jumpdenoise.predict.writers import resolve_io_threads

    assert resolve_io_threads(3) == 3
    assert resolve_io_threads(None) == max(1, min(8, os.cpu_count() or 2))


@pytest.mark.parametrize("write_processes", [0, 2])
def test_run_fields_reports_each_field_once_in_the_callers_thread(tmp_path: Path, write_processes: int) -> None:
    """Done and failed fields (read and write failures) are reported once each, as they
    happen, in the caller's thread, although a hand-over thread feeds the writers."""
    import threading

    from jumpdenoise.predict.engine import Predictor, run_fields

    rng = np.random.default_rng(5)
    fields = {k: rng.integers(0, 4000, (2, 24, 20)).astype(np.uint16) for k in ["f0", "bad", "f2", "f3", "f4"]}
    events: list = []
    values: dict = {}
    caller = threading.get_ident()

    def done(key) -> None:
        events.append(("done", key, threading.get_ident()))

    def failure(f) -> None:
        events.append((f.stage, f.key, threading.get_ident()))

    report = run_fields(Predictor(identity_model(), overlap=0), ["f0", "nope", "bad", "f2", "f3", "f4"],
                        fields.__getitem__, RecordingWriter(str(tmp_path)), prefetch=2,
                        write_processes=write_processes, on_done=done, on_failure=failure,
                        on_written=lambda k, v: values.update({k: (v, threading.get_ident())}))
    assert all(tid == caller for *_, tid in events)
    assert sorted((kind, key) for kind, key, _ in events) == [
        ("done", "f0"), ("done", "f2"), ("done", "f3"), ("done", "f4"), ("read", "nope"), ("write", "bad")]
    assert report.done == ["f0", "f2", "f3", "f4"] and report.handover_seconds > 0
    assert sorted(values) == report.done and all(tid == caller for _, tid in values.values())
    for key in report.done:  # the identity network: what the writer returned is the raw sum (float32 rounding)
        assert values[key][0] == pytest.approx(float(fields[key].sum()), rel=1e-5)
    for key in report.done:
        with np.load(tmp_path / f"{key}.npz") as z:
            assert np.array_equal(z["raw"], fields[key])
