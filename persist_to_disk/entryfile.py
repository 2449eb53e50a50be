"""The entry file format: how one cached value and its header are laid out in bytes.

An entry file is::

    "PTDE" | format u16 | flags u16 | header length u32 | header xxh32 u32   (16 bytes)
    header (its length and xxh32 in the prefix):
        fixed block: payload size u64 | pickle size u64 | payload xxh3-128 (16 bytes) | buffer count u32
                     | file name length u16, then the file name (UTF-8), then (offset u64, size u64) per buffer
        UTF-8 JSON (arguments in readable form, times, sizes, checksum, code version, file name)
    zero padding to a 64-byte boundary
    payload: the pickle (protocol 5), then each out-of-band buffer, each 64-byte aligned

The header can be read without touching the payload, so listing 50,000 entries
never unpickles a value. A load reads what it needs from the fixed block and parses
the JSON only if the header is asked for.
The payload's xxh3-128 checksum is verified before unpickling: a torn, truncated
or bit-flipped file is a miss, never a wrong value.
Large numpy arrays travel as out-of-band pickle buffers: written straight from
the array's memory and, on load, the array's memory is the single buffer the file
is read into (no second copy).

This module only encodes and decodes bytes; :mod:`persist_to_disk.writing` puts them in
files and :mod:`persist_to_disk.store` reads them back.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import mmap
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash

__all__ = [
    "ALIGN",
    "FIXED",
    "FORMAT_VERSION",
    "HEADER_PEEK",
    "MAGIC",
    "PICKLE_PROTOCOL",
    "PREFIX",
    "CorruptEntry",
    "Entry",
    "Payload",
    "decode",
    "header_region",
    "make_head",
    "padding",
    "parse_header",
    "parse_prefix",
    "payload_of",
    "pickle_payload",
]

MAGIC = b"PTDE"
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 5
ALIGN = 64

PREFIX = struct.Struct("<4sHHII")
FIXED = struct.Struct("<QQ16sIH")  # payload size, pickle size, payload xxh3-128, buffer count, name length
_SPAN = struct.Struct("<QQ")  # one out-of-band buffer's (offset, size) in the payload
_HEAD = struct.Struct("<" + PREFIX.format[1:] + FIXED.format[1:])  # the prefix and the fixed block, read at once
HEADER_PEEK = 8192  # bytes read from the start of a file to get its whole header in one read, usually


class CorruptEntry(Exception):
    """An entry file failed a check; it is treated as a miss."""


class Entry:
    """A loaded entry: the value and its header.

    The header JSON is parsed on first access: a hit returns only the value, and the
    parse was a third of its decoding time.
    """

    __slots__ = ("_header", "_json", "value")

    def __init__(self, value: Any, header: dict[str, Any] | None = None, header_json: bytes = b"") -> None:
        self.value = value
        self._header = header
        self._json = header_json  # checked against the header checksum already; parsed when asked for

    @property
    def header(self) -> dict[str, Any]:
        if self._header is None:
            self._header = _parse_json(self._json)
        return self._header

    def __repr__(self) -> str:
        return f"Entry(value={self.value!r}, header={self.header!r})"


def padding(n: int) -> int:
    return (-n) % ALIGN


@dataclass
class Payload:
    """A pickled value as written after the header: the pickle, then its out-of-band buffers, each
    64-byte aligned (``chunks``, in file order; ``layout``: each buffer's [offset, size])."""

    chunks: list[memoryview | bytes]
    layout: list[list[int]]
    pickle_size: int
    size: int

    def checksum(self) -> bytes:
        hasher = xxhash.xxh3_128()
        for chunk in self.chunks:
            hasher.update(chunk)
        return hasher.digest()


def pickle_payload(value: Any, dumps: Callable[..., bytes] = pickle.dumps) -> Payload:
    """``dumps``: ``pickle.dumps`` or a stand-in taking ``protocol`` and ``buffer_callback``
    (the cell magic pickles notebook functions by value); what it writes loads with ``pickle``."""
    buffers: list[pickle.PickleBuffer] = []
    main = dumps(value, protocol=PICKLE_PROTOCOL, buffer_callback=buffers.append)
    return payload_of(main, buffers)


def payload_of(main: bytes, buffers: list[pickle.PickleBuffer]) -> Payload:
    """The pickle ``main`` and its out-of-band buffers laid out as written after the head."""
    chunks: list[memoryview | bytes] = [main]
    layout: list[list[int]] = []
    offset = len(main)
    for buf in buffers:
        raw = buf.raw()
        pad = padding(offset)
        if pad:
            chunks.append(bytes(pad))
            offset += pad
        chunks.append(raw)
        layout.append([offset, raw.nbytes])
        offset += raw.nbytes
    return Payload(chunks, layout, len(main), offset)


def make_head(
    payload: Payload, header: dict[str, Any], checksum: bytes, room: int | None = None
) -> tuple[bytes, dict[str, Any]]:
    """(prefix + header + padding, the final header). Its length does not depend on ``checksum``,
    so a writer can leave room for the head and write it once the payload is hashed; ``room``: make
    the head exactly that long (a multiple of ALIGN, at least the natural length) with spaces in the JSON."""
    header = dict(header)
    header.update(
        format=FORMAT_VERSION,
        pickle_size=payload.pickle_size,
        buffers=payload.layout,
        payload_size=payload.size,
        checksum=checksum.hex(),
    )
    header_bytes = json.dumps(header, separators=(",", ":"), default=str).encode("utf-8")
    # the fixed block repeats what a load needs, so a hit does not parse the JSON (empty name: none recorded)
    name = str(header.get("file", "")).encode("utf-8")
    fixed = FIXED.pack(payload.size, payload.pickle_size, checksum, len(payload.layout), len(name)) + name
    spans = b"".join(_SPAN.pack(o, n) for o, n in payload.layout)
    if room is not None:  # JSON allows spaces after the opening brace
        spaces = room - PREFIX.size - len(fixed) - len(spans) - len(header_bytes)
        if spaces < 0:
            raise ValueError(f"entry head needs {room - spaces} bytes, room is {room}")
        header_bytes = b"{" + b" " * spaces + header_bytes[1:]
    region = fixed + spans + header_bytes
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, 0, len(region), xxhash.xxh32_intdigest(region))
    head = prefix + region
    return head + bytes(padding(len(head))), header


def parse_prefix(blob: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(header length, header checksum) from the first 16 bytes; raise CorruptEntry if not ours."""
    if len(blob) < PREFIX.size:
        raise CorruptEntry("file shorter than an entry prefix")
    magic, version, _flags, hlen, hsum = PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise CorruptEntry("not a persist_to_disk entry (bad magic)")
    if version > FORMAT_VERSION:
        raise CorruptEntry(f"entry written by a newer format ({version} > {FORMAT_VERSION}); upgrade to read it")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"unknown entry format {version}")
    return hlen, hsum


def header_region(blob: bytes | bytearray | memoryview) -> bytes:
    """The header bytes after the prefix, their checksum verified."""
    hlen, hsum = parse_prefix(blob)
    raw = bytes(blob[PREFIX.size : PREFIX.size + hlen])
    if len(raw) != hlen or xxhash.xxh32_intdigest(raw) != hsum:
        raise CorruptEntry("header checksum mismatch")
    return raw


def _json_offset(raw: bytes) -> int:
    """Where the JSON starts in a header region: after the fixed block, the file name and the buffer spans."""
    try:
        _size, _pickle_size, _checksum, nbuf, nlen = FIXED.unpack_from(raw)
    except struct.error:
        raise CorruptEntry("header shorter than its fixed block") from None
    end = FIXED.size + nlen + nbuf * _SPAN.size
    if end > len(raw):
        raise CorruptEntry("header shorter than its fixed block")
    return end


_scan_json = json.scanner.make_scanner(json.decoder.JSONDecoder())


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        header, end = _scan_json(text, 0)  # json.loads without its type checks and whitespace regexes
        if end != len(text):
            raise ValueError(f"extra data at {end}")
    except StopIteration as exc:
        raise CorruptEntry(f"header is not JSON: no value at {exc.value}") from None
    except ValueError as exc:
        raise CorruptEntry(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptEntry("header is not a JSON object")
    return header


def parse_header(blob: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The whole header dict of an entry."""
    raw = header_region(blob)
    return _parse_json(raw[_json_offset(raw) :])


def decode(blob: bytes | bytearray | mmap.mmap, name: str | None = None) -> Entry:
    """Check and unpickle a whole entry read into one buffer (writable when it holds out-of-band buffers).

    ``name``: the file name it was read from; an entry written under another name
    (a file moved or copied by hand) is refused before its payload is touched.
    Every hit runs this: the prefix and the fixed block are unpacked in one step, and
    anything unusual (short, foreign, newer format) is explained by the slow checks.
    """
    try:
        magic, version, _flags, hlen, hsum, size, pickle_size, checksum, nbuf, nlen = _HEAD.unpack_from(blob)
    except struct.error:
        magic = b""
    if magic != MAGIC or version != FORMAT_VERSION:
        header_region(blob)  # raises CorruptEntry saying what is wrong
        raise CorruptEntry("header shorter than its fixed block")
    region_end = PREFIX.size + hlen
    raw = blob[PREFIX.size : region_end]
    if len(raw) != hlen or xxhash.xxh32_intdigest(raw) != hsum:
        raise CorruptEntry("header checksum mismatch")
    at = _HEAD.size + nlen
    spans_end = at + nbuf * _SPAN.size
    if spans_end > region_end:
        raise CorruptEntry("header shorter than its fixed block")
    if name is not None and nlen:
        expected = name.encode("utf-8")
        same = blob.startswith(expected, _HEAD.size) if type(blob) is bytes else blob[_HEAD.size : at] == expected
        if nlen != len(expected) or not same:  # (a small entry's bytes are compared where they are: no slice)
            written_as = bytes(blob[_HEAD.size : at]).decode("utf-8", "replace")
            raise CorruptEntry(f"it holds the entry written as {written_as!r}, not this one (moved or copied?)")
    start = region_end + padding(region_end)
    if len(blob) != start + size:
        raise CorruptEntry(f"payload is {len(blob) - start} bytes, header says {size} (truncated or torn)")
    if nbuf:
        if isinstance(blob, bytes):
            blob = bytearray(blob)  # out-of-band buffers become arrays, which must be writable
        view = memoryview(blob)[start:]
        if xxhash.xxh3_128_digest(view) != checksum:
            raise CorruptEntry("payload checksum mismatch")
        buffers = [view[o : o + n] for o, n in _SPAN.iter_unpack(blob[at:spans_end])]
        value = pickle.loads(view[:pickle_size], buffers=buffers)
    else:  # a small entry's bytes are sliced (a copy of a few hundred bytes costs less than a memoryview)
        payload = blob[start:] if type(blob) is bytes else memoryview(blob)[start:]
        if xxhash.xxh3_128_digest(payload) != checksum:
            raise CorruptEntry("payload checksum mismatch")
        value = pickle.loads(payload if pickle_size == size else payload[:pickle_size])
    return Entry(value, None, bytes(blob[spans_end:region_end]))
