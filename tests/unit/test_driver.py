"""The one stage driver (jumpdenoise.driver.run_stage): checks, lock, precheck, units, finalize,
run state; executors shaped by stage metadata; the layering it relies on.

The toy stage is this module itself (its ``prepare/plan/run_one/finalize/precheck``), run in
this process; it writes one file per unit into its output folder.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from jumpdenoise.config import ExecutorConfig, load_config
from jumpdenoise.driver import run_stage
from jumpdenoise.errors import ConfigError, OutputInUseError, UnitFailures, UnsafeOutputError
from jumpdenoise.executors import make_executor
from jumpdenoise.executors.dask import DaskExecutor
from jumpdenoise.executors.local import LocalExecutor
from jumpdenoise.io.output_lock import OutputLock, lock_path
from jumpdenoise.run_state import RunState
from jumpdenoise.stages.base import CONVERT, PREDICT, REPORT, TRAIN, Stage, StageIO, Unit
from jumpdenoise.stages.session import PlateSession

PACKAGE = Path(__file__).resolve().parents[2] / "jumpdenoise"


class ToyRequest(BaseModel):
    out: Path
    source: Path
    keys: list[str] = ["a", "b"]
    fail: str | None = None
    refuse: bool = False


def precheck(toy: ToyRequest) -> None:
    if toy.refuse:
        raise ConfigError("precheck: the model would make this plate worse")


def prepare(toy: ToyRequest, session: PlateSession) -> str:
    toy.out.mkdir(parents=True, exist_ok=True)
    return "prepared"


def plan(toy: ToyRequest) -> list[Unit]:
    return [Unit(stage="toy", key=k, items=[k]) for k in toy.keys if not (toy.out / k).exists()]


def run_one(toy: ToyRequest, unit: Unit, session: PlateSession) -> dict:
    if unit.key == toy.fail:
        raise ValueError(f"unit {unit.key} broke")
    (toy.out / unit.key).write_text(unit.key)
    return {"written": unit.key}


def finalize(toy: ToyRequest, outcomes: list, session: PlateSession) -> dict:
    (toy.out / "summary.json").write_text(json.dumps(sorted(o.key for o in outcomes if o.ok)))
    return {"done": sorted(p.name for p in toy.out.iterdir())}


def _toy_io(toy: ToyRequest) -> StageIO:
    return StageIO(toy.out, "plate", (toy.source,))


TOY = Stage("toy", __name__, io=_toy_io, finalize_on_failure=True)


@pytest.fixture()
def toy(tmp_path: Path) -> ToyRequest:
    (tmp_path / "src").mkdir()
    return ToyRequest(out=tmp_path / "out", source=tmp_path / "src")


def test_run_stage_runs_units_finalizes_and_records(toy: ToyRequest, tmp_path: Path) -> None:
    state = RunState(tmp_path / "run")
    run = run_stage(TOY, toy, LocalExecutor(1), state)
    assert run.prepared == "prepared" and [u.key for u in run.units] == ["a", "b"]
    assert run.summary == {"done": ["a", "b", "summary.json"]} and not run.already_complete
    assert state.is_done("toy") and state.unit("toy", "a")["value"] == {"written": "a"}
    assert [u["key"] for u in state.plan("toy")["units"]] == ["a", "b"]
    assert not lock_path(toy.out).exists()  # released
    again = run_stage(TOY, toy, LocalExecutor(1))
    assert again.already_complete and again.outcomes == []


def test_failed_unit_is_summarised_after_finalize_and_stage_not_done(toy: ToyRequest, tmp_path: Path) -> None:
    state = RunState(tmp_path / "run")
    with pytest.raises(UnitFailures) as err:
        run_stage(TOY, toy.model_copy(update={"fail": "b"}), LocalExecutor(1), state)
    assert str(err.value) == "toy: 1 unit(s) failed:\n  b: ValueError: unit b broke"
    assert json.loads((toy.out / "summary.json").read_text()) == ["a"]  # finalized anyway
    assert not state.is_done("toy") and state.unit("toy", "b")["ok"] is False
    run = run_stage(TOY, toy.model_copy(update={"fail": "b"}), LocalExecutor(1), check=False)
    assert run.failures == {"b": "ValueError: unit b broke"}


def test_precheck_stops_before_the_output_is_touched(toy: ToyRequest) -> None:
    with pytest.raises(ConfigError, match="worse"):
        run_stage(TOY, toy.model_copy(update={"refuse": True}), LocalExecutor(1))
    assert not toy.out.exists() and not lock_path(toy.out).exists()


def test_overlapping_or_locked_output_is_refused_before_prepare(toy: ToyRequest) -> None:
    with pytest.raises(UnsafeOutputError, match="inside the input"):
        run_stage(TOY, toy.model_copy(update={"out": toy.source / "o"}), LocalExecutor(1))
    with OutputLock(toy.out, token="another-run"):
        with pytest.raises(OutputInUseError, match="in use by"):
            run_stage(TOY, toy, LocalExecutor(1))
        run_stage(TOY, toy, LocalExecutor(1), token="another-run")  # the same run shares its lock
    assert not toy.out.with_name("o").exists()


def test_make_executor_reads_what_the_stage_needs(tmp_path: Path) -> None:
    local = ExecutorConfig(kind="local", workers=3)
    assert make_executor(local).workers == 3
    assert make_executor(local, CONVERT).workers == 3
    assert make_executor(local, PREDICT).workers == 1  # parallel inside: this process
    assert make_executor(local, TRAIN).workers == 1 and make_executor(local, REPORT).workers == 1
    dask = ExecutorConfig(kind="dask", workers=2)
    assert isinstance(make_executor(dask, CONVERT), DaskExecutor) and make_executor(dask, CONVERT).processes is False
    assert make_executor(dask, PREDICT).processes is True
    slurm = ExecutorConfig(kind="slurm", log_dir=tmp_path / "logs")
    assert (make_executor(slurm, PREDICT).gpus, make_executor(slurm, PREDICT).stage) == (True, "predict")
    assert make_executor(slurm, CONVERT).gpus is False
    assert isinstance(make_executor(slurm, TRAIN), LocalExecutor)  # the pipeline submits training itself


def test_unknown_stage_in_a_slurm_profile_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="predcit"):
        load_config(overrides={"executor": {"kind": "slurm", "profile": {"stages": {"predcit": {"time_min": 5}}}}})


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


STAGE_FILES = sorted(p.name for p in (PACKAGE / "stages").glob("*.py"))
DRIVES_ITSELF: set[str] = set()


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason="runs its own units", strict=True))
                                  if n in DRIVES_ITSELF else n for n in STAGE_FILES])
def test_stages_import_no_executor(name: str) -> None:
    assert not [n for n in _runtime_imports(PACKAGE / "stages" / name) if n.startswith("jumpdenoise.executors")]


def test_slurm_code_keeps_no_stage_list_and_imports_no_private_pipeline_names() -> None:
    private = [n for n in _runtime_imports(PACKAGE / "pipeline_slurm.py")
               if n.startswith(("jumpdenoise.pipeline.", "jumpdenoise.driver.")) and n.rsplit(".", 1)[1][0] == "_"]
    assert private == []
    assert "GPU_STAGES" not in (PACKAGE / "executors" / "slurm.py").read_text()
    assert "scontrol" not in (PACKAGE / "pipeline_slurm.py").read_text()
