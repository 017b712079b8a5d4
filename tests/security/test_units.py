"""Fast tests of the pure logic: the failure limits and byte budget, typed
parameters, and what a caller may read of an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tingyin.api.errors import generic_message, without_server_paths
from tingyin.api.guard import AuthGuard, ServerBusy, TooManyFailures
from tingyin.api.params import flag, integer, number, string
from tingyin.errors import EngineError, InvalidRequest, ServiceUnavailable, TingyinError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(clock: Clock, per_address: int = 3, per_key: int = 2) -> AuthGuard:
    return AuthGuard(per_address=per_address, per_key=per_key, window_s=10, held_bytes_limit=100, clock=clock)


def test_failures_per_address_within_the_window() -> None:
    clock = Clock()
    limits = guard(clock)
    for _ in range(3):
        limits.check("1.2.3.4")
        limits.failed("1.2.3.4")
    with pytest.raises(TooManyFailures):
        limits.check("1.2.3.4")
    limits.check("5.6.7.8")  # other addresses are not concerned
    clock.now += 10.5
    limits.check("1.2.3.4")


def test_failures_per_key_from_any_address() -> None:
    clock = Clock()
    limits = guard(clock)
    limits.failed("10.0.0.1", "appkey")
    limits.failed("10.0.0.2", "appkey")
    with pytest.raises(TooManyFailures):
        limits.check("10.0.0.3", "appkey")
    limits.check("10.0.0.3", "another-key")
    limits.check("10.0.0.3")


def test_limits_of_zero_are_off() -> None:
    limits = guard(Clock(), per_address=0, per_key=0)
    for _ in range(1000):
        limits.failed("1.2.3.4", "k")
    limits.check("1.2.3.4", "k")


def test_held_byte_budget() -> None:
    limits = guard(Clock())
    limits.hold(60)
    with pytest.raises(ServerBusy):
        limits.hold(41)
    limits.release(60)
    limits.hold(100)
    assert limits.held_bytes == 100 and issubclass(ServerBusy, ServiceUnavailable)


def test_integer() -> None:
    assert integer("16000", "rate", low=1, high=10**6) == 16000
    assert integer(16000.0, "rate", low=1, high=10**6) == 16000
    for bad in (True, 16000.5, "16k", None, {}, [1], 1e19, 99999999999999999999, "1" * 30):
        with pytest.raises(InvalidRequest):
            integer(bad, "rate", low=1, high=10**6)
    with pytest.raises(InvalidRequest):
        integer("7", "top_num", low=1, high=10, digits_ok=False)


def test_number_string_flag() -> None:
    assert number("2.5", "w", low=-10, high=10) == 2.5
    for bad in (True, "nan", "1e999", 11, "x", None):
        with pytest.raises(InvalidRequest):
            number(bad, "w", low=-10, high=10)
    assert string(42, "cuid", max_length=60, numbers_ok=True) == "42"
    for bad in ({"a": 1}, "a\x00b", "x" * 61, 42, None):
        with pytest.raises(InvalidRequest):
            string(bad, "cuid", max_length=60)
    assert flag("True", "f", False) and not flag(0, "f", True) and flag(None, "f", True)
    with pytest.raises(InvalidRequest):
        flag("maybe", "f", True)


def test_what_a_caller_reads(home: Path) -> None:
    leaked = f"cannot read the audio: '{home}/blobs/7c/cf/7ccf00' or '/tmp/x/y'"
    assert without_server_paths(leaked) == "cannot read the audio: '<server path>' or '<server path>'"
    assert without_server_paths("see http://files.example/tmp/a.wav") == "see http://files.example/tmp/a.wav"
    assert generic_message(EngineError("ctranslate2 said: /models/x broke"), "r1") == (
        "The recognition engine failed on this input. Quote request id r1 to the operator."
    )
    assert generic_message(TingyinError("KeyError: 'x'"), "") == "Internal error."
    assert generic_message(KeyError("x"), "r2").startswith("Internal error.")
