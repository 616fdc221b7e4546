"""PlateSession: what a stage caches lives in the session the driver makes, so a stage run
never sees what an earlier run left in the process; close() releases the writer processes.

The toy stage is this module itself: it caches its request's ``greeting`` in the session, as a
real stage caches its model or its layout.
"""

from __future__ import annotations

import json
import pickle
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from jumpdenoise.driver import run_stage
from jumpdenoise.executors.local import LocalExecutor
from jumpdenoise.run_state import RunState
from jumpdenoise.stages.base import Stage, StageIO, Unit, bind
from jumpdenoise.stages.session import PAYLOADS_KEY, PlateSession

SESSIONS: list[PlateSession] = []  # the sessions the toy stage saw, for the assertions


class MemoRequest(BaseModel):
    out: Path
    greeting: str


def prepare(memo: MemoRequest, session: PlateSession) -> None:
    memo.out.mkdir(parents=True, exist_ok=True)
    session.cached("greeting", lambda: memo.greeting)
    SESSIONS.append(session)


def plan(memo: MemoRequest) -> list[Unit]:
    return [Unit(stage="memo", key=k, items=[k]) for k in ("a", "b")]


def run_one(memo: MemoRequest, unit: Unit, session: PlateSession) -> dict:
    SESSIONS.append(session)
    greeting = session.cached("greeting", lambda: memo.greeting)
    (memo.out / unit.key).write_text(greeting)
    return {"greeting": greeting, PAYLOADS_KEY: {unit.key: np.arange(3)}}


def finalize(memo: MemoRequest, outcomes: list, session: PlateSession) -> dict:
    SESSIONS.append(session)
    payloads = {k: v.tolist() for o in outcomes for k, v in o.value.pop(PAYLOADS_KEY).items()}
    (memo.out / "payloads.json").write_text(json.dumps(payloads, sort_keys=True))
    return {"greetings": sorted({o.value["greeting"] for o in outcomes})}


MEMO = Stage("memo", __name__, io=lambda memo: StageIO(memo.out, "plate"))


def test_a_stage_run_never_sees_what_an_earlier_run_cached(tmp_path: Path) -> None:
    SESSIONS.clear()
    state = RunState(tmp_path / "run")
    first = run_stage(MEMO, MemoRequest(out=tmp_path / "one", greeting="hello"), LocalExecutor(1), state)
    used_first = list(SESSIONS)
    SESSIONS.clear()
    second = run_stage(MEMO, MemoRequest(out=tmp_path / "two", greeting="bye"), LocalExecutor(1))
    assert first.summary == {"greetings": ["hello"]} and second.summary == {"greetings": ["bye"]}
    assert (tmp_path / "two" / "a").read_text() == "bye" == (tmp_path / "two" / "b").read_text()
    # prepare, both units and finalize of one run share one session, closed when the run ends
    assert len(used_first) == 4 and len({id(s) for s in used_first}) == 1 and used_first[0].closed
    assert SESSIONS[0] is not used_first[0] and SESSIONS[0].closed
    # payloads reach finalize as values and are never recorded in the run state
    assert json.loads((tmp_path / "one" / "payloads.json").read_text()) == {"a": [0, 1, 2], "b": [0, 1, 2]}
    assert state.unit("memo", "a")["value"] == {"greeting": "hello"}


def _greeting_in_this_process(fn) -> str:
    return fn(Unit(stage="memo", key="w", items=["w"]))["greeting"]


def test_a_bound_unit_never_carries_its_session_to_another_process(tmp_path: Path) -> None:
    import multiprocessing as mp

    SESSIONS.clear()
    memo = MemoRequest(out=tmp_path / "out", greeting="hi")
    memo.out.mkdir()
    with PlateSession() as mine:
        mine.cached("greeting", lambda: "cached in the driver")
        fn = bind(__name__, memo, mine)
        assert fn(Unit(stage="memo", key="a", items=["a"]))["greeting"] == "cached in the driver"
        copy = pickle.loads(pickle.dumps(fn))  # e.g. a threaded Dask cluster, in this process
        assert copy.session is mine and copy == fn
        with mp.get_context("spawn").Pool(1) as pool:  # another process: a session of its own
            assert pool.apply(_greeting_in_this_process, (fn,)) == "hi"
    assert pickle.loads(pickle.dumps(fn)).session is None  # closed: never found again
    with pytest.raises(RuntimeError, match="closed"):
        mine.cached("greeting", lambda: "again")
    assert _greeting_in_this_process(pickle.loads(pickle.dumps(fn))) == "hi"
    worker_session = SESSIONS[-1]
    assert worker_session is not mine and worker_session.closed and not worker_session.keeps_payloads


def test_close_releases_the_writer_processes_and_their_shared_memory() -> None:
    raw = np.zeros((2, 32, 32), np.uint16)
    session = PlateSession()
    pool = session.writer_pool.get(2, 4, raw, raw.shape)
    assert session.writer_pool.get(2, 4, raw, raw.shape) is pool  # reused within the session
    procs, name = list(pool._procs), pool._shm.name
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    session.close()
    assert not any(p.is_alive() for p in procs)
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    session.close()  # idempotent


def test_payload_budget_is_per_session() -> None:
    session = PlateSession(payload_limit_bytes=100)
    assert session.keep_payload(60) and not session.keep_payload(60) and session.keep_payload(40)
    assert PlateSession().keep_payload(60)  # a new session starts with the whole budget
    assert not PlateSession(keeps_payloads=False).keep_payload(1)
