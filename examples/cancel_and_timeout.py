"""Cancelling by id, timeouts and retries.

* a queued job and a running job are cancelled by id (``pool.cancel``);
* a job that runs past its ``timeout=`` ends ``timed_out``;
* a flaky job succeeds on its third attempt thanks to a :class:`RetryPolicy`, and a broken job
  fails on every attempt and ends ``failed`` with its last exception.

Run it with ``python examples/cancel_and_timeout.py``.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_jobpool import (
    JobCancelled,
    JobHandle,
    JobTimeout,
    RetryPolicy,
    current_job,
    open_job_pool,
)


async def long_task(started: trio.Event | None = None) -> str:
    """Run for a minute (unless cancelled or timed out first)."""
    if started is not None:
        started.set()
    await trio.sleep(60)
    return "finished"


async def flaky() -> str:
    """Fail on the first two attempts, succeed on the third."""
    await trio.sleep(0.01)
    attempt = current_job().attempts
    if attempt < 3:
        raise ConnectionError(f"network blip on attempt {attempt}")
    return f"deployed on attempt {attempt}"


async def broken() -> None:
    """Always fail."""
    await trio.sleep(0.01)
    raise RuntimeError("tests are red")


def describe(handle: JobHandle[Any]) -> str:
    """One line about a handle: status, attempts and error."""
    error = handle.error
    error_text = "-" if error is None else f"{type(error).__name__}: {error}"
    return (
        f"{handle.job_id:<12} status={handle.status.value:<10} "
        f"attempts={handle.attempts}  error={error_text}"
    )


async def main() -> None:
    retry = RetryPolicy(max_attempts=3, backoff=0.05, jitter=False)
    async with open_job_pool(max_workers=1, queue_size=10) as pool:
        # 1. Cancel a running job and a queued job by id.
        started = trio.Event()
        running = await pool.submit(long_task, started, job_id="running")
        await started.wait()  # the only worker is busy with it now
        queued = await pool.submit(long_task, job_id="queued")
        print(f"before cancel: running is {running.status.value}, queued is {queued.status.value}")
        pool.cancel("queued")
        pool.cancel("running")
        await running.wait()
        print(describe(queued))
        print(describe(running))
        try:
            await running.result()
        except JobCancelled as exc:
            print(f"  result() raised JobCancelled: {exc}")

        # 2. A job that runs past its timeout.
        slow = await pool.submit(long_task, job_id="too-slow", timeout=0.1)
        try:
            await slow.result()
        except JobTimeout as exc:
            print(describe(slow))
            print(f"  result() raised JobTimeout: {exc}")

        # 3. Retries: one job recovers, one keeps failing.
        recovered = await pool.submit(flaky, job_id="flaky", retry=retry)
        failed = await pool.submit(broken, job_id="broken", retry=retry)
        print(f"  flaky result: {await recovered.result()}")
        await failed.wait()
        print(describe(recovered))
        print(describe(failed))

        stats = pool.stats()
        print(
            f"stats: completed={stats.total_completed} failed={stats.total_failed} "
            f"cancelled={stats.total_cancelled} timed_out={stats.total_timed_out} "
            f"retried={stats.total_retried}"
        )


if __name__ == "__main__":
    trio.run(main)
