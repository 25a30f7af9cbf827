"""The action-log record and the local layout (store/layout.py): named offsets, one codec."""

from __future__ import annotations

import time

from redis_gocache.store.entry import Entry
from redis_gocache.store.layout import (
    OUTPUT_AT,
    OUTPUT_END,
    RECORD_SIZE,
    format_record,
    output_path,
    output_relpath,
    parse_fields,
    parse_record,
    record_output_hex,
)

ACTION = "ab" * 32
ENTRY = Entry(bytes(range(32)), 123456, 1_700_000_000_123_456_789)


def test_a_record_round_trips_at_its_fixed_width() -> None:
    line = format_record(ACTION, ENTRY, 1_700_000_000.7)
    assert len(line) == RECORD_SIZE == 177
    assert line[OUTPUT_AT:OUTPUT_END] == record_output_hex(line) == ENTRY.output_id.hex()
    assert parse_record(line) == (ENTRY, 1_700_000_000.0)
    assert parse_fields(line) == (ENTRY.output_id, ENTRY.size, ENTRY.time_ns, 1_700_000_000)


def test_malformed_records_are_refused() -> None:
    line = format_record(ACTION, ENTRY, time.time())
    upper = line[:OUTPUT_AT] + line[OUTPUT_AT:OUTPUT_END].upper() + line[OUTPUT_END:]
    for bad in (line[:-1], line[:-1] + "x", upper, line.replace(" ", "_", 1),
                line[:OUTPUT_END] + "x" + line[OUTPUT_END + 1:], "", line + "\n"):
        assert parse_fields(bad) is None, bad


def test_output_paths_share_one_scheme() -> None:
    hexid = ENTRY.output_id.hex()
    assert output_relpath(hexid) == f"o/{hexid[:2]}/{hexid}"
    assert output_path("/root", hexid) == f"/root/{output_relpath(hexid)}"
