"""A store in a dict: the smallest implementation of the ``Store`` protocol, for tests.

It shows that a pool needs nothing of a store but the protocol (``open_job_pool(store=...)``
accepts any implementation), and lets tests break the store on purpose: while ``failing`` is
set, every commit fails, as a full disk would make SQLite's.

Writes are queued with a ticket each and committed together at the next ``wait`` or ``flush``
(group commit, as SQLite's). A failed commit fails its inserts for good (their submitters got
the error) and keeps its updates, which ``rewrite_failed`` queues again.

It keeps periodic schedules too (the ``ScheduleBook`` protocol, in ``schedules``): each step
commits the writes queued before it, then is made at once, as one write (a tick's state and its
job together), or fails as a whole while ``failing`` is set.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from trio_jobpool import StoreError
from trio_jobpool.stores import JobRecord
from trio_jobpool.stores._base import ScheduleRecord

LIVE = ("queued", "retrying", "running", "scheduled")


class MemoryStore:
    """A ``Store`` whose durable state is ``rows`` (job id -> the latest record written)."""

    def __init__(
        self,
        rows: dict[str, JobRecord] | None = None,
        schedules: dict[str, ScheduleRecord] | None = None,
    ) -> None:
        self.rows: dict[str, JobRecord] = {} if rows is None else rows
        self.schedules: dict[str, ScheduleRecord] = {} if schedules is None else schedules
        self.on_commit_result: Callable[[StoreError | None], None] | None = None
        self.failing = False  # set by a test: every commit fails until it is cleared
        self.failed_commits = 0
        self.commits = 0
        self.log: list[tuple[str, str, str]] = []  # (write, job id, status) as committed
        self._queue: list[tuple[str, JobRecord]] = []
        self._failed: list[tuple[str, JobRecord]] = []
        self._issued = self._committed = 0
        self._errors: list[tuple[int, int]] = []  # (after, upto): tickets of failed commits
        self._next_seq = 1 + max((r.seq for r in self.rows.values()), default=0)
        self._was_failing = False

    @property
    def url(self) -> str:
        return "memory-store://test"

    async def open(self, runtime: object = None) -> list[JobRecord]:
        live = [r for r in self.rows.values() if r.status in LIVE]
        for record in live:
            if record.status == "running":  # interrupted by a crash: it runs again
                record.status = "queued"
                record.crashes += 1
        return [copy.copy(r) for r in sorted(live, key=lambda r: (r.priority, r.seq))]

    def _write(self, kind: str, record: JobRecord) -> int:
        self._queue.append((kind, copy.copy(record)))
        self._issued += 1
        return self._issued

    def add(self, record: JobRecord) -> int:
        record.seq = self._next_seq
        self._next_seq += 1
        return self._write("add", record)

    def add_now(self, record: JobRecord) -> None:
        ticket = self.add(record)
        self._commit()
        self._raise_if_failed(ticket)

    def started(self, record: JobRecord) -> int:
        return self._write("start", record)

    def progressed(self, record: JobRecord) -> int:
        return self._write("progress", record)

    def changed(self, record: JobRecord) -> int:
        return self._write("change", record)

    async def wait(self, ticket: int) -> None:
        if self._committed < ticket:
            self._commit()
        self._raise_if_failed(ticket)

    async def flush(self) -> None:
        await self.wait(self._issued)

    def flush_now(self) -> None:
        self._commit()

    def rewrite_failed(self) -> None:
        for kind, record in self._failed:
            self._write(kind, record)
        self._failed = []

    def load(self, job_id: str) -> JobRecord | None:
        record = self.rows.get(job_id)
        return None if record is None else copy.copy(record)

    async def aclose(self) -> None:
        self._commit()

    def _commit(self) -> None:
        batch, self._queue = self._queue, []
        after, self._committed = self._committed, self._issued
        if not batch:
            return
        if self.failing:
            self.failed_commits += 1
            self._errors.append((after, self._committed))
            self._failed.extend(w for w in batch if w[0] != "add")
            self._was_failing = True
            self._report(StoreError(f"{self.url}: the disk is full"))
            return
        self.commits += 1
        for kind, record in batch:
            self.rows[record.job_id] = record
            self.log.append((kind, record.job_id, record.status))
        if self._was_failing:
            self._was_failing = False
            self._report(None)

    def _report(self, error: StoreError | None) -> None:
        if self.on_commit_result is not None:
            self.on_commit_result(error)

    def _raise_if_failed(self, ticket: int) -> None:
        for after, upto in self._errors:
            if after < ticket <= upto:
                raise StoreError(f"{self.url}: the disk is full")

    # -- the book of periodic schedules ----------------------------------------------------

    async def load_schedules(self) -> list[ScheduleRecord]:
        self._commit()
        return [copy.deepcopy(s) for _, s in sorted(self.schedules.items())]

    async def declare_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        self._step()
        current = self.schedules.get(record.name)
        kept = record.declared_over(current)
        if kept is None:
            assert current is not None
            return copy.deepcopy(current)
        self.schedules[kept.name] = copy.deepcopy(kept)
        return kept

    async def remove_schedule(self, name: str) -> bool:
        self._step()
        return self.schedules.pop(name, None) is not None

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        self._step()
        current = self.schedules.get(before.name)
        if current is None:
            return None
        if current.position() != before.position():
            return copy.deepcopy(current)
        self.schedules[after.name] = copy.deepcopy(after)
        if job is not None:
            job.seq = self._next_seq
            self._next_seq += 1
            self.rows[job.job_id] = copy.copy(job)
            self.log.append(("fire", job.job_id, job.status))
        return after

    def _step(self) -> None:
        """A schedule step is a commit of its own after the writes queued before it."""
        self._commit()
        if self.failing:
            self.failed_commits += 1
            self._was_failing = True
            error = StoreError(f"{self.url}: the disk is full")
            self._report(error)
            raise error
        self.commits += 1
        if self._was_failing:
            self._was_failing = False
            self._report(None)

    def statuses(self) -> dict[str, str]:
        """Every job's status as last committed."""
        return {job_id: r.status for job_id, r in self.rows.items()}


def record_of(job_id: str, name: str, *args: Any, status: str = "queued") -> JobRecord:
    """A record as a store would hold it for a job submitted earlier."""
    return JobRecord(job_id=job_id, name=name, args=list(args), priority=5, status=status)
