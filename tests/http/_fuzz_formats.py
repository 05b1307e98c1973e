"""The string formats of the app's OpenAPI document that schemathesis cannot draw by itself
(tests/http/test_fuzz.py in process, and tests/http/_fuzz_hooks.py for its command line).

``cron`` (a schedule's cron expression): the document gives its type, and the pool checks it
(422 naming ``cron``). Whether 5 fields name a time at all (``0 0 31 2 *`` does not) is more than
a pattern can say, so a valid request's expression is drawn from the expressions the library
promises: each field a list of ``*``, a value, a range or a step, within the field's range,
with month and weekday names in any case. Days of the month stop at 28, so that every month has
them.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

__all__ = ["cron_expressions", "register"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@st.composite
def _term(draw: st.DrawFn, low: int, high: int, names: tuple[str, ...] = ()) -> str:
    """One term of a field whose values are ``low`` .. ``high`` (``names`` from ``low`` on)."""

    def value(number: int) -> str:
        if names and number - low < len(names) and draw(st.booleans()):
            name = names[number - low]
            return draw(st.sampled_from((name, name.lower(), name.title())))
        return str(number)

    kind = draw(st.sampled_from(("*", "*/", "value", "range", "range/")))
    if kind == "*":
        return "*"
    if kind == "*/":
        return f"*/{draw(st.integers(1, high - low + 1))}"
    first = draw(st.integers(low, high))
    if kind == "value":
        return value(first)
    last = draw(st.integers(first, high))
    text = f"{value(first)}-{value(last)}"
    if kind == "range/":
        text += f"/{draw(st.integers(1, high - low + 1))}"
    return text


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    return st.lists(_term(low, high, names), min_size=1, max_size=3).map(",".join)


def cron_expressions() -> st.SearchStrategy[str]:
    """Valid 5-field cron expressions, their fields separated by one or more spaces."""
    fields = st.tuples(
        _field(0, 59),
        _field(0, 23),
        _field(1, 28),
        _field(1, 12, _MONTHS),
        _field(0, 6, _WEEKDAYS),
    )
    spaces = st.sampled_from((" ", "  ", "\t"))
    return st.tuples(fields, spaces).map(lambda drawn: drawn[1].join(drawn[0]))


def register() -> None:
    """Tell schemathesis how to draw a ``cron`` string."""
    schemathesis.openapi.format("cron", cron_expressions())
