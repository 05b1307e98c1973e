"""The keyed waiting room's order, checked against a model of the contract (API.md section 12):
a free worker gets the best eligible job, by ``(priority, order of entry)``, where a job is
eligible while its key runs fewer jobs than its ``max_running``; a job put back in front goes
ahead of every job of its priority; a start counts as delayed (``delayed_starts``) when its job
waited at some moment while its key was at its limit.

The room (``fair=False``, no aging) keeps keyed jobs in a shared order and sets aside those
whose key is at its limit when they come up, so the interleavings that matter are those of
limits that change while a key's jobs wait in both places: random programs of pushes, takes,
stops, cancels, jobs put back and limit changes (hypothesis) drive the room and the model side
by side, and every take, every "may this job start now?" and every key's counts must agree.
The pool-level properties (tests/test_flow_properties.py) cover the same room through the
public API; this test pins its order exactly, without any event loop in between.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_jobpool import JobStatus, Limit, _flow_room
from trio_jobpool._flow_room import FlowRoom
from trio_jobpool._job import JobHandle

KEYS: list[str | None] = ["a", "b", None]


async def _noop() -> None:  # pragma: no cover - never run
    pass


class Model:
    """The contract's order over the same jobs."""

    def __init__(self) -> None:
        self.order = 0
        self.waiting: dict[int, tuple[int, int]] = {}  # job index -> (priority, order)
        self.running: dict[str | None, int] = {}
        self.limits: dict[str, int] = {}

    def enter(self, index: int, priority: int, *, front: bool = False) -> None:
        self.order += 1
        self.waiting[index] = (priority, -self.order if front else self.order)

    def under_limit(self, key: str | None) -> bool:
        return key is None or self.running.get(key, 0) < self.limits.get(key, math.inf)

    def best(self, keys: dict[int, str | None]) -> int | None:
        eligible = [i for i in self.waiting if self.under_limit(keys[i])]
        return min(eligible, key=self.waiting.__getitem__, default=None)


priorities = st.integers(0, 1)
operation = st.one_of(
    *[st.tuples(st.just("push"), st.sampled_from(KEYS), priorities)] * 3,
    *[st.tuples(st.just("take"))] * 3,
    *[st.tuples(st.just("stop"), st.integers(0, 1000))] * 2,
    st.tuples(st.just("cancel"), st.integers(0, 1000)),
    st.tuples(st.just("put_back"), st.integers(0, 1000)),
    st.tuples(st.just("limit"), st.sampled_from(KEYS[:2]), st.sampled_from([None, 0, 1, 2])),
    st.tuples(st.just("direct"), st.sampled_from(KEYS), priorities),
)


# cap: how many jobs of a key the shared order holds (the room's _SHARED_PER_KEY); small caps
# send keys' later jobs to their own queues while earlier ones are still shared.
@pytest.mark.parametrize("cap", [1, 2, _flow_room._SHARED_PER_KEY])
@settings(max_examples=2000, deadline=None)
@given(
    initial=st.lists(st.sampled_from([None, 0, 1, 2]), min_size=2, max_size=2),
    program=st.lists(operation, max_size=80),
)
# A job of a parked key still in the shared order when a later job of the key arrives: the
# later one must wait behind it, also once the first is set aside.
@example(
    initial=[1, None],
    program=[
        ("push", "a", 1),
        ("push", "a", 1),
        ("take",),
        ("push", "a", 1),
        ("take",),
        ("stop", 0),
        ("take",),
    ],
)
def test_every_take_is_the_best_eligible_job(
    cap: int, initial: list[int | None], program: list[tuple[Any, ...]]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_flow_room, "_SHARED_PER_KEY", cap)
        _run(initial, program)


def _run(initial: list[int | None], program: list[tuple[Any, ...]]) -> None:
    room = FlowRoom(lambda: 0.0, lambda when: None)
    model = Model()
    jobs: list[JobHandle[Any]] = []
    keys: dict[int, str | None] = {}
    running: list[int] = []

    def new_job(key: str | None, priority: int) -> JobHandle[Any]:
        job: JobHandle[Any] = JobHandle(None, len(jobs), _noop, (), priority, math.inf, None)  # type: ignore[arg-type]
        job._flow_key = key
        keys[len(jobs)] = key
        jobs.append(job)
        return job

    def set_limit(key: str, max_running: int | None) -> None:
        room.set_limit(key, Limit(max_running=max_running))
        if max_running is None:
            model.limits.pop(key, None)
        else:
            model.limits[key] = max_running

    def start(index: int) -> None:
        jobs[index]._status = JobStatus.RUNNING
        room.started(jobs[index], 0.0)
        key = keys[index]
        model.running[key] = model.running.get(key, 0) + 1
        running.append(index)

    def stop(index: int) -> None:
        running.remove(index)
        room.stopped(jobs[index])
        key = keys[index]
        model.running[key] -= 1

    for key, max_running in zip(KEYS, initial, strict=False):
        assert key is not None
        set_limit(key, max_running)
    # delayed starts: a job that waited at some moment while its key was at its limit
    held: set[int] = set()
    delayed = 0
    for step in program:
        match step:
            case ("push", key, priority):
                job = new_job(key, priority)
                model.enter(job._key, priority)  # type: ignore[arg-type]
                room.push(job)
            case ("take",):
                expected = model.best(keys)
                peeked = room.peek()
                taken = room.pop()
                assert peeked is taken
                assert (None if taken is None else taken._key) == expected
                if expected is not None:
                    del model.waiting[expected]
                    delayed += expected in held
                    start(expected)
            case ("stop", pick) if running:
                index = running[pick % len(running)]
                stop(index)
                jobs[index]._status = JobStatus.COMPLETED
            case ("cancel", pick) if model.waiting:
                index = sorted(model.waiting)[pick % len(model.waiting)]
                room.discard(jobs[index])
                jobs[index]._status = JobStatus.CANCELLED
                del model.waiting[index]
            case ("put_back", pick) if running:
                # a job taken and not started after all (_requeue_unstarted)
                index = running[pick % len(running)]
                stop(index)
                jobs[index]._status = JobStatus.QUEUED
                model.enter(index, jobs[index]._priority, front=True)
                held.discard(index)  # it waits anew
                room.push_front(jobs[index])
            case ("limit", key, max_running):
                set_limit(key, max_running)
            case ("direct", key, priority):
                # a new job handed straight to an idle worker if it may start now
                job = new_job(key, priority)
                may = key is None or (
                    model.under_limit(key) and not any(keys[i] == key for i in model.waiting)
                )
                assert room.may_start(job) == may
                if may:
                    start(job._key)  # type: ignore[arg-type]
                else:
                    job._status = JobStatus.CANCELLED  # never entered
        held.update(i for i in model.waiting if not model.under_limit(keys[i]))
        assert room.delayed == delayed
        assert len(room) == len(model.waiting)
        for key in KEYS[:2]:
            assert key is not None
            stats = room.key_stats(key)
            waiting = sum(1 for i in model.waiting if keys[i] == key)
            assert (stats.running, stats.waiting) == (model.running.get(key, 0), waiting)
    # Everything left drains in the model's order once every limit is lifted.
    for key in KEYS[:2]:
        assert key is not None
        set_limit(key, None)
    while (expected := model.best(keys)) is not None:
        taken = room.pop()
        assert taken is not None
        assert taken._key == expected
        del model.waiting[expected]
        start(expected)
    assert room.pop() is None
    assert len(room) == 0


def test_a_take_sets_aside_at_most_the_cap_of_jobs_of_one_key() -> None:
    # 5,000 jobs of k submitted while k is under its limit, then one without a key: once k is
    # at its limit, the take that reaches the unkeyed job has set aside only the jobs of k that
    # the shared order held (the cap), not the 4,999 waiting.
    room = FlowRoom(lambda: 0.0, lambda when: None)
    room.set_limit("k", Limit(max_running=1))
    jobs: list[JobHandle[Any]] = []
    for index in range(5001):
        job: JobHandle[Any] = JobHandle(None, index, _noop, (), 5, math.inf, None)  # type: ignore[arg-type]
        job._flow_key = "k" if index < 5000 else None
        jobs.append(job)
        room.push(job)
    first = room.pop()
    assert first is jobs[0]
    first._status = JobStatus.RUNNING
    room.started(first, 0.0)
    assert room.pop() is jobs[5000]
    set_aside = [job for job in jobs[1:5000] if job._seq & 3 == 1]
    assert len(set_aside) == _flow_room._SHARED_PER_KEY - 1
    # and k's jobs still come out in their order
    room.stopped(first)
    order = []
    while (taken := room.pop()) is not None:
        order.append(taken._key)
        taken._status = JobStatus.RUNNING
        room.started(taken, 0.0)
        room.stopped(taken)
    assert order == list(range(1, 5000))


def test_a_job_put_back_after_its_key_was_released_is_not_counted_as_delayed() -> None:
    # a starts (k at its limit, b waiting: k is parked), is put back before its code ran (the
    # store could not write its start): k is released by that stop, so a never waited while k
    # was parked, and its start is not a delayed one; b's is.
    room = FlowRoom(lambda: 0.0, lambda when: None)
    room.set_limit("k", Limit(max_running=1))
    a: JobHandle[Any] = JobHandle(None, 0, _noop, (), 5, math.inf, None)  # type: ignore[arg-type]
    b: JobHandle[Any] = JobHandle(None, 1, _noop, (), 5, math.inf, None)  # type: ignore[arg-type]
    for job in (a, b):
        job._flow_key = "k"
        room.push(job)
    for _ in range(2):
        assert room.pop() is a
        a._status = JobStatus.RUNNING
        room.started(a, 0.0)
        room.stopped(a)
        a._status = JobStatus.QUEUED
        room.push_front(a)
    assert room.pop() is a
    room.started(a, 0.0)
    assert room.delayed == 0
    room.stopped(a)
    assert room.pop() is b
    assert room.delayed == 1
