"""Random programs of keyed submits, claims, ends, retries, hand-backs, cancels and limit changes
against the Redis queue's scripts, checked step by step against a model of the contract: a claim
takes exactly the best jobs (priority, then submission order) of the keys under their limit, so a
key's ``max_running`` is never exceeded and a key at its limit blocks no other job; the queue's
running counts and waiting count match the model after every step. (The pool-level programs on
memory and SQLite are in tests/test_flow_properties.py; real processes in
test_redis_flow_processes.py.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import anyio
import coredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_jobpool.stores._redis_queue import NewJob, RedisQueue

KEYS: list[str | None] = ["a", "b", "c", None]
LEASE = 60_000


@dataclass
class Model:
    """What the queue must hold: waiting jobs by (priority, order), running jobs, limits."""

    order: int = 0
    waiting: dict[str, tuple[int, int, str | None]] = field(default_factory=dict)
    running: dict[str, str | None] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, tuple[int, int, str | None]] = field(default_factory=dict)

    def key_running(self, key: str) -> int:
        return sum(1 for k in self.running.values() if k == key)

    def claim(self, count: int) -> list[str]:
        taken: list[str] = []
        while len(taken) < count:
            eligible = [
                (priority, order, job_id)
                for job_id, (priority, order, key) in self.waiting.items()
                if key is None or self.key_running(key) < self.limits.get(key, 10**9)
            ]
            if not eligible:
                break
            _, _, job_id = min(eligible)
            self.running[job_id] = self.waiting.pop(job_id)[2]
            taken.append(job_id)
        return taken


steps = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from(KEYS), st.integers(1, 3)),
        st.tuples(st.just("submit"), st.sampled_from(KEYS), st.integers(1, 3)),
        st.tuples(st.just("claim"), st.integers(1, 4)),
        st.tuples(st.just("stop"), st.sampled_from(["end", "back"]), st.integers(0, 1000)),
        st.tuples(st.just("cancel"), st.integers(0, 1000)),
        st.tuples(
            st.just("limit"), st.sampled_from(KEYS[:3]), st.one_of(st.none(), st.integers(0, 2))
        ),
    ),
    min_size=5,
    max_size=50,
)


async def _run(url: str, program: list[tuple[Any, ...]]) -> None:
    name = f"model{uuid.uuid4().hex[:10]}"
    async with coredis.Redis.from_url(url, decode_responses=True) as client:
        queue = RedisQueue(client, name)
        await queue.open_epoch()
        model = Model()
        try:
            for step in program:
                kind = step[0]
                if kind == "submit":
                    _, key, priority = step
                    model.order += 1
                    job_id = f"j{model.order}"
                    await queue.submit([NewJob(job_id, "n", [], priority, {}, None, key)], None)
                    model.waiting[job_id] = model.jobs[job_id] = (priority, model.order, key)
                elif kind == "claim":
                    claimed, _ = await queue.claim("p", step[1], LEASE)
                    assert [c.job_id for c in claimed] == model.claim(step[1])
                    assert [c.key for c in claimed] == [model.running[c.job_id] for c in claimed]
                elif kind == "stop" and model.running:
                    job_id = sorted(model.running)[step[2] % len(model.running)]
                    if step[1] == "end":
                        assert await queue.end("p", [(job_id, "completed", {})]) == [job_id]
                        del model.running[job_id]
                    else:  # handed back: to its place (its submission order) in the queue
                        assert await queue.give_back("p", [(job_id, False, {}, False)], 3) == [
                            job_id
                        ]
                        del model.running[job_id]
                        model.waiting[job_id] = model.jobs[job_id]
                elif kind == "cancel" and model.waiting:
                    job_id = sorted(model.waiting)[step[1] % len(model.waiting)]
                    assert await queue.cancel(job_id) == "cancelled"
                    del model.waiting[job_id]
                elif kind == "limit":
                    _, key, max_running = step
                    await queue.set_limit(
                        key,
                        None if max_running is None else {"max_running": max_running, "rate": None},
                    )
                    if max_running is None:
                        model.limits.pop(key, None)
                    else:
                        model.limits[key] = max_running
                # after every step: the queue's counts are the model's
                stats = await queue.stats(60_000)
                assert stats.waiting == len(model.waiting)
                assert stats.running == len(model.running)
                krun = await client.hgetall(f"{queue.prefix}:krun")
                expected = {
                    key: str(model.key_running(key))
                    for key in ("a", "b", "c")
                    if model.key_running(key)
                }
                assert dict(krun) == expected
            # everything left is claimable once the limits go: nothing was lost in a key's set
            for key in ("a", "b", "c"):
                await queue.set_limit(key, None)
                model.limits.pop(key, None)
            left = len(model.waiting)
            claimed, _ = await queue.claim("p", left + 1, LEASE)
            assert sorted(c.job_id for c in claimed) == sorted(model.claim(left + 1))
        finally:
            keys = [key async for key in client.scan_iter(match=f"{{{name}}}*")]
            if keys:
                await client.delete(keys)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(program=steps)
def test_random_programs_claim_exactly_what_the_limits_allow(
    redis_url: str, program: list[tuple[Any, ...]]
) -> None:
    anyio.run(_run, redis_url, program)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_one_fixed_program_on_both_backends(redis_url: str, backend: str) -> None:
    program: list[tuple[Any, ...]] = [
        ("limit", "a", 1),
        ("submit", "a", 2),
        ("submit", "a", 1),
        ("submit", None, 3),
        ("submit", "b", 1),
        ("claim", 4),
        ("stop", "end", 0),
        ("claim", 4),
        ("stop", "back", 0),
        ("claim", 4),
    ]
    anyio.run(_run, redis_url, program, backend=backend)
