"""``pysvm replay`` prints each result as ``json.dumps`` would, also when a GPU read's
``data`` is long enough to be encoded by msgspec (cli/replay.py result_line)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pysvm.cli.replay import _FAST_DATA, result_line

N = _FAST_DATA + 3


@pytest.mark.parametrize("data", [
    [7] * N,
    list(range(-N, N)),
    [0, 2**63 - 1, -(2**63)] * N,            # the 64-bit edges msgspec still encodes
    [2**64] * N,                              # past 64 bits: the json module's text
    [True, False] * N,                        # bools are ints to Python, not to JSON
    [1.5, 2.0, 1e300] * N,
    ["a, b", "é", "\n"] * N,
    [[1, 2], {"k": 3}] * N,
    [1] * (_FAST_DATA - 1),                   # below the threshold
    [None] * N,
])
def test_same_text_as_json_dumps(data: list[Any]) -> None:
    out = {"i": 6, "ev": "gpu_access", "result": "ok", "faults": 0, "data": data,
           "note": "ünï, \"q\""}
    assert result_line(out) == json.dumps(out)


def test_keys_in_order_and_non_string_keys() -> None:
    rng = random.Random(5)
    for _ in range(20):
        keys = rng.sample(["z", "a", "data", "m", "é"], 5)
        out: dict[Any, Any] = {k: rng.randrange(-9, 9) for k in keys}
        out["data"] = [rng.randrange(-10**6, 10**6) for _ in range(N)]
        assert result_line(out) == json.dumps(out)
    odd: dict[Any, Any] = {1: "x", "data": [3] * N}
    assert result_line(odd) == json.dumps(odd)


def test_the_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    import pysvm.cli.replay as replay
    seen: list[int] = []
    real = replay.msgspec.json.encode

    def counting(obj: Any) -> bytes:
        seen.append(len(obj))
        return real(obj)

    monkeypatch.setattr(replay.msgspec.json, "encode", counting)
    data = list(range(N))
    assert result_line({"a": 1, "data": data}) == json.dumps({"a": 1, "data": data})
    assert seen == [N]
    result_line({"data": data[:10]})             # short: the json module only
    assert seen == [N]
