"""The trace schema (pysvm.trace.schema): every golden line decodes, bad lines are EINVAL
naming the field, round trips, the JSON Schema, and docs/trace-format.md kept in step.

Regenerate the shipped files after changing an event:
``python tests/trace/test_schema.py`` (writes src/pysvm/trace/trace.schema.json and the
generated part of docs/trace-format.md).
"""

from __future__ import annotations

import errno
import importlib.resources
import json
import random
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pysvm.errors import XeError
from pysvm.trace import schema as S
from pysvm.trace.results import SUMMARY_KEYS

ROOT = Path(__file__).resolve().parents[2]
TRACES = ROOT / "tests" / "pysvm" / "traces"
INPUTS = sorted(p for p in TRACES.glob("*.jsonl") if not p.name.endswith(".expected.jsonl"))
SCHEMA_FILE = ROOT / "src" / "pysvm" / "trace" / "trace.schema.json"
DOC = ROOT / "docs" / "trace-format.md"


def expected_of(path: Path) -> Path:
    return path.with_name(path.stem + ".expected.jsonl")


def golden_lines() -> list[tuple[str, int, bytes, dict[str, Any]]]:
    """(trace, i, input line, expected output line) of every non-blank golden line."""
    out = []
    for p in INPUTS:
        want = [json.loads(x) for x in expected_of(p).read_text().splitlines()]
        lines = [x for x in p.read_bytes().splitlines() if x.strip()]
        assert len(lines) == len(want) - 1, p       # the last expected line is the summary
        out += [(p.stem, k, x, want[k]) for k, x in enumerate(lines)]
    return out


GOLDEN = golden_lines()


def refusal(line: bytes | str) -> S.TraceDecodeError:
    with pytest.raises(S.TraceDecodeError) as ei:
        S.decode(line)
    e = ei.value
    assert isinstance(e, XeError) and e.errno == errno.EINVAL
    return e


# -- the golden traces -------------------------------------------------------------


def test_there_are_golden_lines_of_every_event() -> None:
    """The golden traces hold every event but prefetch (the README run has it; it is
    exercised by tests/pysvm and decoded below)."""
    seen = {o["ev"] for *_, o in GOLDEN}
    assert set(S.EVENTS) - seen == {"prefetch"}
    ev = S.decode('{"ev":"invalidate","addr":4096,"size":8192,"event":"protection_vma"}')
    assert S.as_kwargs(ev) == {"addr": 4096, "size": 8192, "event": "protection_vma",
                               "process": "main"}
    ev = S.decode('{"ev":"prefetch","vm":"v","addr":0,"range":4096,"region":"vram"}')
    assert S.as_kwargs(ev) == {"vm": "v", "addr": 0, "range": 4096, "region": "vram"}


@pytest.mark.parametrize("trace", sorted({t for t, *_ in GOLDEN}))
def test_golden_lines_decode_or_are_refused_as_the_handlers_refuse_them(trace: str) -> None:
    """Every line the schema refuses was refused by the handlers too, with the same errno,
    message and ``ev`` (so moving these checks into the schema changes no golden byte);
    every other line decodes into the Struct of its event."""
    refused = 0
    for _, i, line, want in (g for g in GOLDEN if g[0] == trace):
        try:
            ev = S.decode(line)
        except S.TraceDecodeError as e:
            refused += 1
            got = {"ev": e.ev, "result": "EINVAL", "message": e.strerror}
            assert got == {k: want.get(k) for k in got}, (trace, i)
            continue
        assert type(ev) is S.EVENTS[want["ev"]], (trace, i)
    if trace == "xe_errors":
        assert refused == 18      # the field-level refusals of that trace


def test_every_line_the_schema_passes_was_not_a_field_level_refusal() -> None:
    """The handlers' field helpers said 'field "x" ...' / 'missing field'; such lines must
    not slip through the schema."""
    for _, _, line, want in GOLDEN:
        msg = want.get("message", "")
        if msg.startswith(("field ", "missing field", "unknown event", "an event must")):
            with pytest.raises(S.TraceDecodeError):
                S.decode(line)


def test_the_readme_run_decodes(tmp_path: Path) -> None:
    """The README's recorded run (pysvm simulate --profile newest --unbind --seed 3)."""
    from pysvm.cli.main import main
    run = tmp_path / "run.jsonl"
    assert main(["simulate", "--profile", "newest", "--unbind", "--seed", "3",
                 "--record", str(run), "--quiet"]) == 0
    lines = run.read_bytes().splitlines()
    assert len(lines) > 2000
    names = {S.decode(x).__struct_config__.tag for x in lines}
    assert {"bind", "madvise", "gpu_access", "munmap", "unbind_device"} <= names


# -- refusals ------------------------------------------------------------------------

BAD: list[tuple[str, str]] = [
    ('{"ev":"cpu_write","addr":0,"size":4096,"vaule":9}', 'unknown field "vaule" in cpu_write'),
    ('{"ev":"gpu_access","vm":"v","addr":0,"size":4096,"op":"read","vaule":9}',
     'unknown field "vaule" in gpu_access'),
    ('{"ev":"mmap","addr":0}', 'missing field "size"'),
    ('{"ev":"mmap","addr":0,"size":"4096"}', 'field "size" must be an integer, not "4096"'),
    ('{"ev":"mmap","addr":0,"size":null}', 'field "size" must be an integer, not null'),
    ('{"ev":"mmap","addr":0,"size":4096.0}', 'field "size" must be an integer, not 4096.0'),
    ('{"ev":"mmap","addr":0,"size":NaN}', 'field "size" must be an integer, not NaN'),
    ('{"ev":"mmap","addr":-1,"size":4096}', 'field "addr" = -1 is below 0'),
    ('{"ev":"mmap","addr":18446744073709551616,"size":4096}',
     'field "addr" = 18446744073709551616 is above 18446744073709551615'),
    ('{"ev":"cpu_write","addr":0,"size":4096,"value":9223372036854775808}',
     'field "value" = 9223372036854775808 is above 9223372036854775807'),
    ('{"ev":"cpu_write","addr":0,"size":4096,"value":-9223372036854775809}',
     'field "value" = -9223372036854775809 is below -9223372036854775808'),
    ('{"ev":"device","name":"g","discrete":1}', 'field "discrete" must be true or false, not 1'),
    ('{"ev":"device","name":7}', 'field "name" must be a string, not 7'),
    ('{"ev":"vm_create","vm":"v","device":"g","va_bits":58}', 'field "va_bits" = 58 is above 57'),
    ('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096,"pat_index":65536}',
     'field "pat_index" = 65536 is above 65535'),
    ('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096,"bo":null}',
     'field "bo" must be a string, not null'),
    ('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096,"flags":[5]}',
     "bind: unknown flag 5; use ['autoreset', 'cpu_addr_mirror', 'dumpable', 'immediate', "
     "'null', 'read_only']"),
    ('{"ev":"bo_create","bo":"b","device":"g","size":4096,"placement":["lmem"]}',
     "bo_create: unknown placement 'lmem'; use ['vram', 'system']"),
    ('{"ev":"config","profile":"6.19"}',
     "field \"profile\" = '6.19': expected one of ['6.18', '7.0', 'newest']"),
    ('{"ev":"gpu_access","vm":"v","addr":0,"size":4096,"op":"exec"}',
     "field \"op\" = 'exec': expected one of ['read', 'write', 'atomic']"),
    ('{"ev":"prefetch","vm":"v","addr":0,"range":4096,"region":"lmem"}',
     "field \"region\" = 'lmem': expected one of ['vram', 'system', 'pref_loc']"),
    ('{"ev":"invalidate","addr":0,"size":4096,"event":"unmap"}',
     "field \"event\" = 'unmap': expected one of ['clear', 'protection_vma', "
     "'protection_page', 'soft_dirty', 'migrate', 'exclusive']"),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":4294967296}',
     'field "type" = 4294967296 is above 4294967295'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":true}',
     'field "type" must be an integer or a string, not true'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":0,"devmem_fd":4294967296}',
     'field "devmem_fd" = 4294967296 is above 4294967295'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":0,"devmem_fd":-2147483649}',
     'field "devmem_fd" = -2147483649 is below -2147483648'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":0,"region_instance":65536}',
     'field "region_instance" = 65536 is above 65535'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":1,"reserved":[0,-1]}',
     'madvise: "reserved" must hold two u64 integers'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":1,'
     '"reserved":[0,18446744073709551616]}', 'madvise: "reserved" must hold two u64 integers'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":1,"reserved":[0,0,0]}',
     'madvise: "reserved" must hold two integers'),
    ('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":1,"reserved":"x"}',
     'field "reserved" must be a list, not "x"'),
    ('{"ev":"fault_guard","vm":"v","max_iterations":2147483649}',
     'field "max_iterations" = 2147483649 is above 2147483648'),
    ('{"ev":"inject","at":"fault.start","event":5}',
     'inject: field "event" must be an event object with "ev"'),
    ('{"ev":"inject","at":"fault.start","event":{"addr":0}}',
     'inject: field "event" must be an event object with "ev"'),
    ('{"ev":"inject","at":"fault.start","event":{"ev":"frob"}}',
     "inject: unknown event 'frob' in field \"event\""),
    ('{"ev":"inject","at":"fault.start","event":{"ev":"munmap","addr":0,"size":1,"x":1}}',
     'inject: unknown field "x" in munmap'),
    ('{"ev":"inject","at":"fault.start","event":{"ev":"munmap","addr":-1,"size":1}}',
     'inject: field "addr" = -1 is below 0'),
    ('{"ev":"inject","at":"fault.start","event":{"ev":"munmap","addr":18446744073709551616,'
     '"size":1}}', 'field "event.addr" = 18446744073709551616 is above 18446744073709551615'),
    ('{"ev":"inject","at":"fault.middle","event":{"ev":"gc","vm":"v"}}',
     "field \"at\" = 'fault.middle': expected one of ['fault.start', 'fault.after_find_range', "
     "'fault.after_migrate', 'fault.after_get_pages', 'fault.before_bind']"),
    ('{"ev":"teardown","now":true}', 'unknown field "now" in teardown'),
    ('{"ev":"ranges"}', 'missing field "vm"'),
    ('{"ev":"frob"}', "unknown event 'frob'"),
    ('{"ev":null}', 'missing or non-string field "ev"'),
    ('{"vm":"v"}', 'missing or non-string field "ev"'),
    ("[]", "an event must be a JSON object"),
    ("{", "not valid JSON: Expecting property name enclosed in double quotes (column 2)"),
    ('{"ev":"gc","vm":"v"} {}', "not valid JSON: Extra data (column 22)"),
]


@pytest.mark.parametrize(("line", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_bad_lines_are_einval_naming_the_field(line: str, message: str) -> None:
    e = refusal(line)
    assert e.strerror == message
    e2 = refusal(line.encode())            # bytes and str give the same answer
    assert e2.strerror == message and e2.ev == e.ev
    obj = json.loads(line) if not message.startswith("not valid JSON") else None
    if isinstance(obj, dict) and isinstance(obj.get("ev"), str):
        assert e.ev == obj["ev"]
        with pytest.raises(S.TraceDecodeError) as ei:
            S.decode_object(obj)           # the object form gives the same message
        assert ei.value.strerror == message
    else:
        assert e.ev is None


def test_not_utf8() -> None:
    e = refusal(b'{"ev":"ranges","vm":"\xff"}')
    assert e.strerror == "not valid UTF-8 at byte 21" and e.ev is None


def test_the_checks_the_model_keeps_are_not_in_the_schema() -> None:
    """State-dependent and kernel-ordered checks stay in the model: these decode."""
    for line in ('{"ev":"bind","vm":"nope","op":"map","addr":4097,"range":0}',
                 '{"ev":"madvise","vm":"v","addr":1,"range":0,"type":3,"val":7,"pad":1}',
                 '{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":9,"devmem_fd":"gpu9"}',
                 '{"ev":"bo_create","bo":"b","device":"g","size":1,'
                 '"placement":["vram","vram"]}',
                 '{"ev":"device","name":"g","discrete":false,"vram_mib":5}',
                 '{"ev":"inject","at":"fault.start","event":{"ev":"gpu_access","vm":"v",'
                 '"addr":0,"size":4096,"op":"read"}}'):
        S.decode(line)


def test_mutated_golden_lines_give_the_same_answer_in_every_form() -> None:
    """Golden events with fields replaced, dropped or added: decode(str), decode(bytes)
    and decode_object(dict) agree (same Struct or same message), and nothing but a
    TraceDecodeError is ever raised."""
    rng = random.Random(11)
    objs = [json.loads(line) for _, _, line, want in GOLDEN if want["result"] == "ok"]
    values: list[object] = [None, True, 0, -1, 1.5, 1 << 64, 1 << 63, -(1 << 63) - 1, "x",
                            [], [1], [0, 0], [0, 0, 0], {}, {"ev": "munmap"},
                            {"ev": "gc", "vm": "v"}, "map", "vram", 4096]
    refused = 0
    for _ in range(3000):
        o = dict(rng.choice(objs))
        for _ in range(rng.randint(1, 3)):
            r, keys = rng.random(), list(o)
            if r < 0.45 and keys:
                o[rng.choice(keys)] = rng.choice(values)
            elif r < 0.65 and keys:
                o.pop(rng.choice(keys))
            else:
                o[rng.choice(["vaule", "addr", "size", "flags", "event", "reserved"])] = \
                    rng.choice(values)
        line = json.dumps(o)
        answers = []
        for form in (line, line.encode(), o):
            try:
                ev = S.decode_object(form) if isinstance(form, dict) else S.decode(form)
                answers.append(("ok", ev))
            except S.TraceDecodeError as e:
                answers.append(("EINVAL", e.strerror, e.ev))
        assert answers[0] == answers[1] == answers[2], line
        refused += answers[0][0] == "EINVAL"
    assert 1500 < refused < 3000


# -- convert / as_kwargs / round trip -------------------------------------------------


def test_defaults_are_the_handlers_defaults() -> None:
    b = S.decode('{"ev":"bind","vm":"v","op":"map","addr":0,"range":4096}')
    assert S.as_kwargs(b) == {"vm": "v", "op": "map", "addr": 0, "range": 4096, "flags": [],
                              "pat_index": 0, "offset": 0, "bo": None}
    m = S.decode('{"ev":"madvise","vm":"v","addr":0,"range":4096,"type":"atomic"}')
    assert S.as_kwargs(m) == {"vm": "v", "addr": 0, "range": 4096, "type": "atomic",
                              "devmem_fd": 0, "migration_policy": 0, "region_instance": None,
                              "val": 0, "pad": 0, "union_reserved": 0, "reserved": (0, 0),
                              "extensions": 0, "retained_init": 0,
                              "retained_fault": None}
    assert S.as_kwargs(S.decode('{"ev":"device","name":"g"}')) == {
        "name": "g", "discrete": True, "vram_mib": None, "smem_atomics": None,
        "atomic_svm_timeslice_ms": 5, "l2_flush_optimized": False, "pat_coh": None,
        "tiles": 1}
    assert S.as_kwargs(S.decode('{"ev":"vm_create","vm":"v","device":"g"}')) == {
        "vm": "v", "device": "g", "fault_mode": False, "va_bits": 48, "process": "main"}
    assert S.as_kwargs(S.decode('{"ev":"bo_create","bo":"b","device":"g","size":4096}'))[
        "placement"] == ["system"]
    assert S.as_kwargs(S.decode('{"ev":"config"}')) == {"profile": "6.18"}
    assert S.as_kwargs(S.decode('{"ev":"query","vm":"v"}')) == {
        "vm": "v", "addr": 0, "range": None}
    assert S.as_kwargs(S.decode('{"ev":"invalidate","addr":0,"size":4096}'))["event"] == "clear"
    assert S.as_kwargs(S.decode('{"ev":"cpu_write","addr":0,"size":4096}'))["value"] == 0
    for ev in ("mmap", "munmap", "cpu_write", "cpu_read", "invalidate"):
        line = json.dumps({"ev": ev, "addr": 0, "size": 4096})
        assert S.as_kwargs(S.decode(line))["process"] == "main", ev
    assert S.as_kwargs(S.decode('{"ev":"teardown"}')) == {}


def test_inject_event_is_a_plain_dict_in_kwargs() -> None:
    ev = S.decode('{"ev":"inject","at":"fault.start","event":{"ev":"munmap","addr":0,'
                  '"size":4096}}')
    assert S.as_kwargs(ev) == {"at": "fault.start",
                               "event": {"ev": "munmap", "addr": 0, "size": 4096,
                                         "process": "main"}}


def test_convert_validates_keyword_arguments() -> None:
    ev = S.convert("gpu_access", {"vm": "v", "addr": 0, "size": 4096, "op": "write",
                                  "value": -3})
    assert isinstance(ev, S.GpuAccessEvent) and ev.value == -3
    for fields, message in (({"vm": "v", "addr": 0, "size": 4096, "op": "read", "vaule": 1},
                             'unknown field "vaule" in gpu_access'),
                            ({"vm": "v", "addr": True, "size": 4096, "op": "read"},
                             'field "addr" must be an integer, not true'),
                            ({"vm": "v", "addr": 1 << 64, "size": 4096, "op": "read"},
                             f'field "addr" = {1 << 64} is above {S.U64_MAX}'),
                            ({"vm": "v", "addr": 0, "op": "read"}, 'missing field "size"'),
                            ({"ev": "gpu_access", "vm": "v"},
                             'unknown field "ev" in gpu_access (give the event as name)')):
        with pytest.raises(S.TraceDecodeError) as ei:
            S.convert("gpu_access", fields)
        assert ei.value.errno == errno.EINVAL and ei.value.strerror == message
    with pytest.raises(S.TraceDecodeError, match="unknown event 'gpu'"):
        S.convert("gpu", {})


@pytest.mark.parametrize("trace", [p.stem for p in INPUTS])
def test_round_trip(trace: str) -> None:
    """decode(encode(e)) == e, and the encoding is the line with its defaults filled in."""
    for t, _, line, _ in GOLDEN:
        if t != trace:
            continue
        try:
            ev = S.decode(line)
        except S.TraceDecodeError:
            continue
        enc = msgspec.json.encode(ev)
        assert S.decode(enc) == ev
        back, orig = json.loads(enc), json.loads(line)
        # the line's own fields unchanged (a nested event's too: inject's event)
        assert {k: ({j: back[k][j] for j in v} if isinstance(v, dict) else back[k])
                for k, v in orig.items()} == orig
        assert S.convert(back.pop("ev"), back) == ev


# -- the JSON Schema --------------------------------------------------------------------


def test_json_schema_validates_the_golden_traces_and_refuses_bad_lines() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = S.json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    v = jsonschema.Draft202012Validator(schema)
    n = 0
    for _, _, line, _ in GOLDEN:
        try:
            S.decode(line)
        except S.TraceDecodeError:
            continue
        v.validate(json.loads(line))
        n += 1
    assert n > 250
    for line, _ in BAD:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "4096.0" in line:
            continue    # JSON Schema counts 4096.0 as an integer; the decoder does not
        assert not v.is_valid(obj), line


def test_result_fields_match_every_golden_output_line() -> None:
    """Every ok output line's fields (after i, ev, result, message) fit the event's result
    Struct and its JSON Schema definition."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = S.json_schema()
    for trace, i, _, want in GOLDEN:
        if want["ev"] not in S.EVENTS:
            continue
        cls = S.EVENTS[want["ev"]]
        extra = {k: v for k, v in want.items() if k not in ("i", "ev", "result", "message")}
        if want["result"] != "ok" and cls is not S.GpuAccessEvent:
            assert not extra, (trace, i)
            continue
        msgspec.convert(extra, cls.result, strict=True)
        ref = {"$ref": f"#/$defs/{cls.result.__name__}", "$defs": schema["$defs"]}
        jsonschema.validate(extra, ref)


def test_summary_keys_are_the_worlds() -> None:
    from pysvm.world import SUMMARY_KEYS as WORLD_KEYS
    assert SUMMARY_KEYS == WORLD_KEYS


def test_choices_are_the_models() -> None:
    """The schema's enumerations equal the model's tables (the model reads these names)."""
    from pysvm.world import BIND_FLAGS, MADVISE_TYPES, MREMAP_FLAGS
    from pysvm.world import NOTIFY_EVENTS as _NOTIFY_EVENTS
    from pysvm.xe.bo import PLACEMENTS
    from pysvm.xe.host import INJECTION_POINTS
    from pysvm.xe.profile import PROFILES
    model = (PLACEMENTS, tuple(PROFILES), tuple(sorted(BIND_FLAGS)),
             tuple(sorted(MADVISE_TYPES)), tuple(_NOTIFY_EVENTS), INJECTION_POINTS)
    ours = (S.PLACEMENTS, S.PROFILES, S.BIND_FLAGS, S.MADVISE_TYPES, S.NOTIFY_EVENTS,
            S.INJECTION_POINTS)
    assert ours == model
    assert tuple(MREMAP_FLAGS) == S.MREMAP_FLAGS
    assert [MREMAP_FLAGS[f] for f in S.MREMAP_FLAGS] == [1, 2, 4]    # the MREMAP_* bits


def test_events_are_the_handlers() -> None:
    from pysvm.world import EVENTS, World
    assert tuple(S.EVENTS) == EVENTS
    assert all(callable(getattr(World, name)) for name in S.EVENTS)


def test_shipped_json_schema_is_the_generated_one() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(render_json_schema()), \
        "run: python tests/trace/test_schema.py"
    assert SCHEMA_FILE.read_text() == render_json_schema()
    shipped = importlib.resources.files("pysvm.trace").joinpath("trace.schema.json")
    assert json.loads(shipped.read_text()) == json.loads(render_json_schema())


def render_json_schema() -> str:
    return json.dumps(S.json_schema(), indent=2) + "\n"


# -- docs/trace-format.md: the event reference is generated from the Structs ----------

BEGIN = ("<!-- BEGIN GENERATED from src/pysvm/trace/schema.py and results.py by "
         "`python tests/trace/test_schema.py`; edit those, not this block -->")
END = "<!-- END GENERATED -->"


def _md(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _int_str(lo: int | None, hi: int | None) -> str:
    names = {(0, S.U64_MAX): "u64", (0, 0xFFFF): "u16", (0, 0xFFFFFFFF): "u32",
             (S.S64_MIN, S.S64_MAX): "s64"}
    if (lo, hi) in names:
        return names[(lo, hi)]
    if lo is not None and hi is not None:
        return f"integer {lo}..{hi}"
    if lo is not None:
        return f"integer >= {lo}"
    return "integer"


def _type_str(t: Any, choices: list[str] | None = None) -> str:
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):
        if isinstance(t.type, mi.IntType):
            return _int_str(t.type.ge, t.type.le if t.type.le is not None else
                            (t.extra_json_schema or {}).get("maximum"))
        return _type_str(t.type, choices)
    if isinstance(t, mi.IntType):
        return _int_str(t.ge, t.le)
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.BoolType):
        return "bool"
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.LiteralType):
        vals = choices if choices else [str(v) for v in t.values]
        return " | ".join(f'"{v}"' for v in vals)
    if isinstance(t, mi.ListType):
        return f"list of {_type_str(t.item_type, choices)}"
    if isinstance(t, mi.TupleType):
        return "[" + ", ".join(_type_str(x) for x in t.item_types) + "]"
    if isinstance(t, mi.UnionType):
        parts = list(t.types)
        if parts and all(isinstance(x, mi.StructType) and issubclass(x.cls, S.Event)
                          for x in parts):
            return "event object (any event)"
        return " or ".join(_type_str(x, choices) for x in parts)
    if isinstance(t, mi.StructType):
        return f"object ({t.cls.__name__})"
    raise AssertionError(f"no doc rendering for {t!r}")


def _description(t: Any) -> str:
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):
        return str((t.extra_json_schema or {}).get("description", ""))
    return ""


def _default(f: Any) -> str:
    if f.required:
        return "required"
    if f.default_factory is not msgspec.NODEFAULT:
        return f"`{json.dumps(f.default_factory())}`"
    if f.default is msgspec.NODEFAULT:
        return "see meaning"
    d = list(f.default) if isinstance(f.default, tuple) else f.default
    return f"`{json.dumps(d)}`"


def _nested_structs(t: Any, out: list[type[msgspec.Struct]]) -> None:
    mi = msgspec.inspect
    if isinstance(t, mi.Metadata):
        _nested_structs(t.type, out)
    elif isinstance(t, mi.ListType):
        _nested_structs(t.item_type, out)
    elif isinstance(t, mi.StructType) and t.cls not in out:
        out.append(t.cls)
        for f in t.fields:
            _nested_structs(f.type, out)


def _struct_table(cls: type[msgspec.Struct], event: str | None, result: bool) -> list[str]:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = list(info.fields)
    if not fields:
        return ["No fields."]
    head = "| field | type | present | meaning |" if result else \
        "| field | type | default | meaning |"
    rows = [head, "|---|---|---|---|"]
    for f in fields:
        choices = S._choices(event, f.name) if event is not None and not result else None
        third = ("always" if f.required else "sometimes") if result else _default(f)
        rows.append(f"| `{f.name}` | {_md(_type_str(f.type, choices))} | {third} | "
                    f"{_md(_description(f.type))} |")
    return rows


def render_reference() -> str:
    """The generated part of docs/trace-format.md: every event, field, result, error."""
    out = [BEGIN, "", "## Events", "",
           "| event | what it does |", "|---|---|"]
    for name, cls in S.EVENTS.items():
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        out.append(f"| [`{name}`](#{name}) | {_md(doc)} |")
    for name, cls in S.EVENTS.items():
        doc = (cls.__doc__ or "").strip().split("\n\n")
        out += ["", f"### {name}", "", _md(doc[0]), ""]
        out += [f"Kernel: {_md(cls.kernel)}", ""]
        if len(doc) > 1:
            out += [_md(" ".join(doc[1:])), ""]
        fields = [f for f in msgspec.inspect.type_info(cls).fields]  # type: ignore[attr-defined]
        out += ["Fields (besides `\"ev\": \"" + name + "\"`):", ""]
        out += _struct_table(cls, name, result=False) if fields else ["None."]
        res = cls.result
        if not res.__struct_fields__:
            out += ["", 'Result fields: none (the output line is `{"i", "ev", "result"}`, '
                    'plus `"message"` when refused).']
        else:
            out += ["", f"Result fields: {_md(res.__doc__ or '')}", ""]
            out += _struct_table(res, None, result=True)
        nested: list[type[msgspec.Struct]] = []
        for f in msgspec.inspect.type_info(res).fields:  # type: ignore[attr-defined]
            _nested_structs(f.type, nested)
        for sub in nested:
            out += ["", f"{sub.__name__}: {_md(sub.__doc__ or '')}", ""]
            out += _struct_table(sub, None, result=True)
        out += ["", "Errors:", ""]
        out += [f"* `{e}`: {_md(when)}" for e, when in cls.errors]
    out += ["", END]
    return "\n".join(out) + "\n"


def test_shipped_doc_has_the_generated_reference() -> None:
    text = DOC.read_text()
    assert BEGIN in text and END in text, "run: python tests/trace/test_schema.py"
    block = text[text.index(BEGIN):text.index(END) + len(END)] + "\n"
    assert block == render_reference(), "docs/trace-format.md is stale: " \
        "run python tests/trace/test_schema.py"
    for name, cls in S.EVENTS.items():
        assert f"\n### {name}\n" in text
        for f in cls.__struct_fields__:
            assert f"| `{f}` |" in block
        for f in cls.result.__struct_fields__:
            assert f"| `{f}` |" in block


def test_doc_stands_alone() -> None:
    text = DOC.read_text()
    for word in ("TRACE.md", "CONTRACT.md", "KERNEL-SPEC.md", "WORKLOADS.md", "../shared"):
        assert word not in text
    for key in SUMMARY_KEYS:
        assert f"`{key}`" in text


def write_doc() -> None:
    text = DOC.read_text()
    if BEGIN in text:
        text = text[:text.index(BEGIN)] + render_reference() + \
            text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + render_reference()
    DOC.write_text(text)


def main() -> None:
    SCHEMA_FILE.write_text(render_json_schema())
    write_doc()
    print(f"wrote {SCHEMA_FILE} and {DOC}")


if __name__ == "__main__":
    main()
    sys.exit(0)
