"""Sweep configuration: every mistake is refused before anything runs, naming it."""

from __future__ import annotations

import pytest

from pysvm.sweep import SweepConfigError, expand, load_config, parse_config, run_key
from pysvm.sweep.runner import OPTIONS, default_params


def cfg(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"seeds": 2, "grid": {"preferred_loc": ["device", "system"]}}
    base.update(kw)
    return base


@pytest.mark.parametrize(("doc", "needle"), [
    (cfg(seed=3), "unknown key 'seed' (did you mean 'seeds'?)"),
    (cfg(grid={"prefered_loc": ["device"]}),
     "unknown simulate option 'prefered_loc' (did you mean 'preferred_loc'?)"),
    (cfg(grid={"preferred-loc": ["device"]}), "(write 'preferred_loc')"),
    (cfg(grid={"heap_mib": [32]}), "(write 'size')"),
    (cfg(grid={"seed": [1, 2]}), "give seeds with the top-level key 'seeds'"),
    (cfg(fixed={"nosuch": 1}), "[fixed] unknown simulate option 'nosuch'"),
    (cfg(grid={"size": [32, "64"]}), "size = '64': --size takes int values"),
    (cfg(grid={"size": [True]}), "--size takes int values"),
    (cfg(grid={"unbind": [1]}), "--unbind takes true/false values"),
    (cfg(grid={"size": 32}), "give a non-empty list of values"),
    (cfg(grid={"size": []}), "give a non-empty list of values"),
    (cfg(grid={"size": [32, 32]}), "32 is listed twice"),
    (cfg(grid={}), "[grid] is missing or empty"),
    (cfg(fixed={"size": 32}, grid={"size": [16]}), "size is in both [fixed] and [grid]"),
    ({"grid": {"size": [32]}}, "missing 'seeds'"),
    (cfg(seeds=0), "a count must be in"),
    (cfg(seeds=[]), "give at least one seed"),
    (cfg(seeds=[1, 1]), "1 is listed twice"),
    (cfg(seeds=[1, -2]), "-2 is not a non-negative integer"),
    (cfg(seeds=[1 << 63]), f"{1 << 63} is past {(1 << 63) - 1}"),   # the int64 column
    (cfg(seeds="10"), "seeds must be a count or a list"),
    (cfg(grid={"preferred_loc": ["nowhere"]}), "unknown --preferred-loc 'nowhere'"),
    (cfg(fixed={"devices": 1}, grid={"preferred_loc": ["device", "peer"]}),
     "grid point preferred_loc='peer': --preferred-loc peer needs --devices 2"),
    (cfg(grid={"steps": [0, 10]}), "--steps must be in"),
    (cfg(report={"group_by": "size"}), "[report] group_by = 'size': must name a [grid] option"),
    (cfg(report={"colour": "red"}), "[report] unknown key 'colour'"),
    (cfg(report={"counters": []}), "counters must be a non-empty list"),
    (cfg(fixed=[1]), "'fixed' must be a table"),
])
def test_bad_config_is_refused_naming_the_mistake(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(SweepConfigError) as e:
        parse_config(doc, source="s.toml")
    assert needle in str(e.value)
    assert str(e.value).startswith("s.toml: ")


def test_load_config_reads_toml_and_refuses_bad_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = tmp_path / "ok.toml"
    good.write_text('seeds = [3, 5]\n[fixed]\nsteps = 20\n[grid]\nsize = [16, 32]\n'
                    'preferred_loc = ["device", "system"]\n')
    c = load_config(good)
    assert c.seeds == [3, 5] and c.fixed == {"steps": 20}
    assert c.group_by == "size" and c.x == "preferred_loc"
    bad = tmp_path / "bad.toml"
    bad.write_text("seeds = [1,\n")
    with pytest.raises(SweepConfigError, match=r"bad.toml: not valid TOML"):
        load_config(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"seeds = 1\n\x00\x01")
    with pytest.raises(ValueError, match=r"bin.toml: not a text file \(byte 10: NUL byte"):
        load_config(binary)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\nseeds = 1\n")
    with pytest.raises(ValueError, match=r"latin.toml: not a text file \(byte 5"):
        load_config(latin)


def test_grid_expansion_order_and_resolution() -> None:
    c = parse_config({"seeds": [7, 8], "fixed": {"steps": 30},
                      "grid": {"preferred_loc": ["device", "system"], "size": [16, 32, 64]}})
    runs = expand(c)
    assert len(runs) == c.n_runs == 2 * 3 * 2
    got = [(r.params["preferred_loc"], r.params["size"], r.seed) for r in runs]
    assert got[:4] == [("device", 16, 7), ("device", 16, 8), ("device", 32, 7),
                       ("device", 32, 8)]
    assert got[-1] == ("system", 64, 8)
    for r in runs:
        assert set(r.params) == set(OPTIONS)          # every option resolved
        assert r.params["steps"] == 30
        assert r.params["atomics"] == default_params()["atomics"]
    assert len({r.key for r in runs}) == len(runs)


def test_run_key_depends_only_on_resolved_options_and_seed() -> None:
    a = parse_config({"seeds": [1], "grid": {"size": [32], "preferred_loc": ["device"]}})
    # Same runs written differently: grid order swapped, a default spelled out in [fixed].
    b = parse_config({"seeds": [1], "fixed": {"atomics": default_params()["atomics"]},
                      "grid": {"preferred_loc": ["device"], "size": [32]}})
    assert [r.key for r in expand(a)] == [r.key for r in expand(b)]
    p = dict(expand(a)[0].params)
    assert run_key(p, 1) != run_key(p, 2)
    p["size"] = 64
    assert run_key(p, 1) != expand(a)[0].key
