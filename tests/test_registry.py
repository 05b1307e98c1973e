"""JobRegistry: stable names for async job functions (used by stores and the service)."""

from __future__ import annotations

import pytest

from trio_jobpool import JobHandle, JobNotRegistered, JobNotSerializable, JobRegistry, open_job_pool
from trio_jobpool._registry import check_json


def test_register_by_decorator_with_and_without_a_name() -> None:
    registry = JobRegistry()

    @registry.job
    async def build(repo: str) -> str:
        return repo

    @registry.job(name="tests.run")
    async def run_tests() -> None:
        return None

    build_name = "test_register_by_decorator_with_and_without_a_name.<locals>.build"
    assert registry.get(build_name) is build
    assert registry.get("tests.run") is run_tests
    assert registry.name_of(run_tests) == "tests.run"
    assert "tests.run" in registry
    assert len(registry) == 2
    assert sorted(registry) == sorted([build_name, "tests.run"])


def test_registry_refuses_what_it_cannot_run_or_name() -> None:
    registry = JobRegistry()

    async def one() -> None:
        return None

    async def other() -> None:
        return None

    def not_async() -> None:
        return None

    registry.register(one, name="x")
    registry.register(one, name="x")  # the same function again: fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register(other, name="x")
    with pytest.raises(TypeError, match="async"):
        registry.register(not_async)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        registry.register(other, name="")
    with pytest.raises(JobNotRegistered, match="nope"):
        registry.get("nope")
    with pytest.raises(JobNotRegistered):
        registry.name_of(other)


@pytest.mark.parametrize(
    "value",
    [None, 1, -2.5, "s", True, [1, [2, {"a": None}]], {"k": (1, 2)}, ()],
)
def test_json_values_pass(value: object) -> None:
    check_json(value, "args")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ({1: "x"}, "dict key 1"),
        (object, "class 'object'"),
        ([1, {2, 3}], "{2, 3}"),
        (b"bytes", "b'bytes'"),
    ],
)
def test_json_check_names_the_bad_value(value: object, named: str) -> None:
    with pytest.raises(JobNotSerializable, match="args") as info:
        check_json(value, "args")
    assert named in str(info.value)


def test_json_check_catches_cycles_but_not_shared_values() -> None:
    shared = [1]
    check_json([shared, shared], "args")
    cycle: list[object] = []
    cycle.append(cycle)
    with pytest.raises(JobNotSerializable, match="holds itself"):
        check_json(cycle, "args")


@pytest.mark.anyio
async def test_submit_by_name_with_a_registry() -> None:
    registry = JobRegistry()

    @registry.job(name="double")
    async def double(x: int) -> int:
        return 2 * x

    async with open_job_pool(registry=registry) as pool:
        handle: JobHandle[int] = await pool.submit("double", 21)
        assert await handle.result() == 42
        with pytest.raises(JobNotRegistered, match="triple"):
            await pool.submit("triple", 1)


def test_registry_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="registry"):
        open_job_pool(registry={"a": 1})  # type: ignore[arg-type]
