"""Strict priorities, FIFO within a priority.

One worker is kept busy by a "gate" job while six jobs at priorities 10, 5 and 1 are submitted in
mixed order. Once the gate opens, the waiting jobs start strictly by priority (lower first) and,
within one priority, in the order they were submitted.

Run it with ``python examples/priorities.py``.
"""

from __future__ import annotations

import trio

from trio_jobpool import current_job, open_job_pool

started: list[str] = []


async def gate(running: trio.Event, release: trio.Event) -> None:
    """Occupy the only worker until ``release`` is set."""
    running.set()
    await release.wait()


async def work(name: str) -> None:
    """Record the moment this job starts."""
    started.append(f"{name} (priority {current_job().priority})")
    await trio.sleep(0.01)


async def main() -> None:
    async with open_job_pool(max_workers=1, queue_size=10) as pool:
        running, release = trio.Event(), trio.Event()
        await pool.submit(gate, running, release)
        await running.wait()  # the single worker is now busy

        submissions = [
            ("background-1", 10),
            ("normal-1", 5),
            ("urgent-1", 1),
            ("background-2", 10),
            ("urgent-2", 1),
            ("normal-2", 5),
        ]
        for name, priority in submissions:
            await pool.submit(work, name, priority=priority, job_id=name)
        print("submitted:  " + ", ".join(f"{n} (p{p})" for n, p in submissions))
        print(f"waiting:    {pool.stats().queued_tasks} jobs behind the busy worker")

        release.set()
        await pool.join()

    print("start order:")
    for position, line in enumerate(started, 1):
        print(f"  {position}. {line}")
    expected = [
        "urgent-1",
        "urgent-2",
        "normal-1",
        "normal-2",
        "background-1",
        "background-2",
    ]
    if [line.split()[0] for line in started] != expected:
        raise SystemExit(f"unexpected start order: {started}")
    print("strict priority, then FIFO within each priority: OK")


if __name__ == "__main__":
    trio.run(main)
