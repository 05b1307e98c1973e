"""One measurement in this fresh process: ``python benchmarks/_one.py <impl> <workload> <n>``.

Prints one JSON line: ``{"impl", "workload", "n", "metrics": {...}}``, or ``"na"`` (the
implementation cannot run the workload) or ``"error"`` (a traceback; the exit status is then 1).

With ``--profile LINES`` after the three arguments, the whole run of the driver (event loop
included) goes under cProfile, and the LINES functions with the most time of their own are
printed to stderr (cProfile slows every Python call, so the figures are then not comparable
with others; the shares are what to read).
"""

from __future__ import annotations

import cProfile
import functools
import importlib
import json
import pstats
import sys
import time
import traceback

from impls import BY_NAME, NotSupported
from workloads import WORKLOADS


def measure(
    impl_name: str, workload_key: str, n: int, profile: int | None = None
) -> dict[str, object]:
    impl = BY_NAME[impl_name]
    workload = WORKLOADS[workload_key]
    record: dict[str, object] = {"impl": impl_name, "workload": workload_key, "n": n}
    if workload_key in impl.unsupported:
        record["na"] = "not supported"
        return record
    env = importlib.import_module(impl.module).make_env(impl.variant)
    started = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        try:
            metrics = env.run(functools.partial(workload.driver, env, n))
        finally:
            if profiler is not None:
                profiler.disable()
    except (NotSupported, BaseExceptionGroup) as exc:
        reason = _not_supported(exc)
        if reason is None:
            raise
        record["na"] = reason
        return record
    record["metrics"] = metrics
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
    record["process_s"] = time.perf_counter() - started
    if "trio_jobpool" in sys.modules:  # the runner checks that this is its snapshot
        record["trio_jobpool_file"] = sys.modules["trio_jobpool"].__file__
    return record


def _not_supported(exc: BaseException) -> str | None:
    """The reason if ``exc`` is a NotSupported, alone or alone in (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return str(exc) if isinstance(exc, NotSupported) else None


def main(argv: list[str]) -> int:
    profile = None
    if len(argv) == 5 and argv[3] == "--profile":
        profile, argv = int(argv[4]), argv[:3]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    impl_name, workload_key, n = argv[0], argv[1], int(argv[2])
    try:
        record = measure(impl_name, workload_key, n, profile)
    except Exception as exc:  # reported to the runner as one line
        record = {
            "impl": impl_name,
            "workload": workload_key,
            "n": n,
            "error": "".join(traceback.format_exception(exc)),
        }
        print(json.dumps(record), flush=True)
        return 1
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
