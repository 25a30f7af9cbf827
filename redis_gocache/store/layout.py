"""The local directory's layout and its action-log record: names and offsets, here only.

The cache directory holds one root per trust level (:func:`level_name`): ``v1`` for trusted
helpers, ``v1-readonly`` for read-only ones, either with ``-verified-<keys tag>`` for a
helper that checks signatures (one per set of trusted keys, so a key rotation leaves the old
set's root behind: ``redis-gocache trim`` and ``clear`` cover every root named so).

Under a trust level's root (docs/design.md, "Local directory")::

    o/<hh>/<output-id-hex>   an output body, the DiskPath handed to Go (<hh>: first two digits)
    actions                  the action log: one fixed-width record per line (below)
    tmp/                     files being written, renamed into place when complete
    m/<tag>                  a go command's marker and its kept answers (redis_gocache.answers)
    trimmed                  an empty file whose mtime is the last trim

A spill directory (:mod:`redis_gocache.store.spill`) keeps outputs under the same
``o/<hh>/<hex>`` names, so a spill pointer is :func:`output_relpath` too.

An action-log record, zero-padded to a fixed width, so that a line torn by a crash or a full
disk is recognised by its length::

    <action-hex:64> <output-hex:64> <size:15> <put-time-ns:19> <refreshed:10>\\n

``refreshed`` is the epoch second of the last Redis TTL refresh. Callers read fields through
the offsets below (as Go's own cache names ``hexSize`` and ``entrySize``), never by literal
slices. Nothing is imported here: a warm runner reads records before its first answer.
"""

from __future__ import annotations

from redis_gocache.store.entry import Entry

LEVEL = "v1"
"""The trusted helpers' root in the cache directory; every trust level's root name starts with
it (``v1``, ``v1-readonly``, ``v1-verified-<tag>``, ``v1-readonly-verified-<tag>``)."""

READ_ONLY = "-readonly"
"""Appended to :data:`LEVEL` for read-only helpers: entries an untrusted job wrote locally are
never served to a trusted helper, which does not verify local hits again."""

VERIFIED = "-verified-"
"""Appended with the trusted keys' tag for a helper that checks signatures."""


def level_name(read_only: bool, keys_tag: str | None = None) -> str:
    """The name of a trust level's root in the cache directory (``keys_tag``: the tag of the
    trusted keys, :func:`redis_gocache.signing.keyset_tag`, for a verifying helper)."""
    name = LEVEL + READ_ONLY if read_only else LEVEL
    return name if keys_tag is None else name + VERIFIED + keys_tag


def is_level_name(name: str) -> bool:
    """Whether ``name`` (in the cache directory) is a trust level's root."""
    return name == LEVEL or name.startswith(LEVEL + "-")


OUTPUTS = "o"
"""Directory of the output files, by the first two hex digits of their id."""

TMP = "tmp"
"""Directory of files being written."""

ACTION_LOG = "actions"
"""The action log's file name in the store's root."""

COMMANDS = "m"
"""Directory of the go commands' markers (:func:`redis_gocache.prefetch.marker_path`)."""

TRIM_MARKER = "trimmed"
"""File in the store's root whose mtime is the start of its last trim."""

ID_BYTES = 32
"""Bytes in an action or output id (SHA-256)."""

HEX = 2 * ID_BYTES
"""Hex digits of an id, in a record and in a path."""

SIZE_DIGITS = 15
TIME_DIGITS = 19
REFRESHED_DIGITS = 10

OUTPUT_AT = HEX + 1
"""Offset of the output id's hex in a record (after the action's hex and a space)."""
OUTPUT_END = OUTPUT_AT + HEX
SIZE_AT = OUTPUT_END + 1
SIZE_END = SIZE_AT + SIZE_DIGITS
TIME_AT = SIZE_END + 1
TIME_END = TIME_AT + TIME_DIGITS
REFRESHED_AT = TIME_END + 1
REFRESHED_END = REFRESHED_AT + REFRESHED_DIGITS

RECORD_SIZE = REFRESHED_END + 1
"""Bytes in one action record, its newline included (177)."""

_HEX_DIGITS = frozenset("0123456789abcdef")


def is_hex_id(text: str) -> bool:
    """True for exactly 64 lower-case hex digits: the only thing allowed in a path component
    that came from the protocol or from Redis."""
    return len(text) == HEX and _HEX_DIGITS.issuperset(text)


def output_relpath(output_hex: str) -> str:
    """An output's path under a root (the local store's or a spill directory's)."""
    return f"{OUTPUTS}/{output_hex[:2]}/{output_hex}"


def output_path(root: str, output_hex: str) -> str:
    """An output's path under the local store's ``root``: the DiskPath handed to Go."""
    return f"{root}/{OUTPUTS}/{output_hex[:2]}/{output_hex}"


def scratch_for(path: str, token: str) -> str:
    """A scratch file (named by ``token``) for work on the output at ``path``: in ``tmp/`` of
    the root when ``path`` is an output's place there (``o/<hh>/<hex>``), where the trim
    removes what a crash leaves behind; else beside ``path``."""
    parts = path.rsplit("/", 3)
    if len(parts) == 4 and parts[1] == OUTPUTS and is_hex_id(parts[3]):
        return f"{parts[0]}/{TMP}/{token}"
    return f"{path}.{token}"


def record_action_hex(line: str) -> str:
    """The action's hex in a record (not checked: the index is keyed by it)."""
    return line[:HEX]


def record_output_hex(line: str) -> str:
    """The output's hex in a record that :func:`parse_fields` accepted."""
    return line[OUTPUT_AT:OUTPUT_END]


def format_record(action_hex: str, entry: Entry, refreshed: float) -> str:
    """One action-log line."""
    return (f"{action_hex} {entry.output_id.hex()} {entry.size:0{SIZE_DIGITS}d} "
            f"{entry.time_ns:0{TIME_DIGITS}d} {int(refreshed):0{REFRESHED_DIGITS}d}\n")


def parse_fields(line: str) -> tuple[bytes, int, int, int] | None:
    """The output ID, size, put time (ns) and refresh time (epoch seconds) of one action-log
    line; ``None`` for anything malformed. No object is made beyond the tuple: a warm runner
    runs this on every local hit built from its record. The output's hex
    (:func:`record_output_hex`) is checked here to be exactly what this helper writes."""
    if len(line) != RECORD_SIZE or line[-1] != "\n" or line[HEX] != " " \
            or line[OUTPUT_END] != " " or line[SIZE_END] != " " or line[TIME_END] != " ":
        return None
    output_hex = line[OUTPUT_AT:OUTPUT_END]
    try:
        # fromhex also accepts upper case and spaces: the length and the round trip below
        # keep the path to what this helper itself would have written.
        output_id = bytes.fromhex(output_hex)
        size = int(line[SIZE_AT:SIZE_END])
        time_ns = int(line[TIME_AT:TIME_END])
        refreshed = int(line[REFRESHED_AT:REFRESHED_END])
    except ValueError:
        return None
    if len(output_id) != ID_BYTES or output_id.hex() != output_hex \
            or size < 0 or time_ns < 0 or refreshed < 0:
        return None
    return output_id, size, time_ns, refreshed


def parse_record(line: str) -> tuple[Entry, float] | None:
    """The entry and refresh time of one action-log line; ``None`` for anything malformed."""
    fields = parse_fields(line)
    if fields is None:
        return None
    output_id, size, time_ns, refreshed = fields
    return Entry(output_id, size, time_ns), float(refreshed)


def read_action_log(path: str) -> dict[str, str]:
    """Action hex -> its latest record line, from the log at ``path`` (empty if there is none).
    Lines of the wrong length (torn by a crash) are skipped here; the rest are checked when
    used."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}  # No log yet, or one we cannot read: every lookup is a miss.
    text = data.decode("ascii", "replace")
    index: dict[str, str] = {}
    for line in text.splitlines(keepends=True):
        if len(line) == RECORD_SIZE:
            index[line[:HEX]] = line
    return index
