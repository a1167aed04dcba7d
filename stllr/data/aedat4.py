"""Minimal AEDAT 4.0 polarity-event writer and reader in pure numpy.

tonic reads CIFAR10-DVS's ``.aedat4`` files with the optional `aedat` package (a Rust decoder).
This module lets stllr (a) write small, genuine AEDAT4 files for offline fixtures and (b) read
AEDAT4 polarity events when `aedat` is not installed.

File layout (what the `aedat` decoder accepts):

* magic ``#!AER-DAT4.0\\r\\n``, then a little-endian ``uint32`` length and an ``IOHE`` flatbuffer
  table ``{compression: int32, file_data_position: int64, description: string}`` where
  ``description`` is DV's XML stream description (``outInfo/<id>/typeIdentifier`` = ``EVTS``,
  ``info/sizeX``, ``info/sizeY``);
* packets until EOF: ``uint32 stream_id``, ``uint32 size``, then a size-prefixed ``EVTS``
  flatbuffer ``EventPacket {elements: [Event]}`` with the 16-byte struct
  ``Event {t: int64, x: int16, y: int16, on: bool}`` (optionally LZ4/Zstd-compressed as a whole).

The writer produces uncompressed files; the reader handles uncompressed files and, when the
``lz4`` / ``zstandard`` Python packages are importable, compressed ones.
"""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {0: "none", 1: "lz4", 2: "lz4_high", 3: "zstd", 4: "zstd_high"}

#: The 16-byte flatbuffer ``Event`` struct.
EVENT_STRUCT = np.dtype(
    {
        "names": ["t", "x", "y", "on"],
        "formats": ["<i8", "<i2", "<i2", "?"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)
#: What ``aedat.Decoder`` returns per packet (tonic renames the fields to t, x, y, p).
OUTPUT_DTYPE = np.dtype([("t", np.uint64), ("x", np.uint16), ("y", np.uint16), ("on", bool)])

_DESCRIPTION = (
    '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
    '<node name="{sid}" path="/mainloop/Recorder/outInfo/{sid}/">'
    '<attr key="compression" type="string">NONE</attr>'
    '<attr key="originalModuleName" type="string">stllr</attr>'
    '<attr key="originalOutputName" type="string">events</attr>'
    '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainloop/Recorder/outInfo/{sid}/info/">'
    '<attr key="sizeX" type="int">{w}</attr><attr key="sizeY" type="int">{h}</attr>'
    '<attr key="source" type="string">stllr fixture</attr>'
    "</node></node></node></dv>"
)


def _pad(n: int, align: int) -> int:
    return (-n) % align


def _ioheader(description: str, compression: int = 0, file_data_position: int = -1) -> bytes:
    text = description.encode()
    # [root u32][ident 4][vtable 10 + pad 6][table 24][string]
    vt_pos, tbl_pos = 8, 24
    vtable = struct.pack("<HHHHH", 10, 24, 4, 16, 8)
    table = struct.pack(
        "<iiIIq", tbl_pos - vt_pos, compression, 48 - (tbl_pos + 8), 0, file_data_position
    )
    string = struct.pack("<I", len(text)) + text + b"\0"
    buf = struct.pack("<I", tbl_pos) + b"IOHE" + vtable + b"\0" * 6 + table + string
    return buf + b"\0" * _pad(len(buf), 8)


def _event_packet(events: np.ndarray) -> bytes:
    """Size-prefixed ``EVTS`` flatbuffer; the event array starts 8-byte aligned."""
    arr = np.zeros(len(events), dtype=EVENT_STRUCT)
    for name in ("t", "x", "y", "on"):
        arr[name] = events[name]
    # [size u32][root u32][ident][vtable 6 + pad 2][table: soffset, uoffset][vec len][elements]
    vt_pos, tbl_pos, vec_pos = 12, 20, 28
    body = (
        struct.pack("<I", tbl_pos - 4)  # root offset, relative to the end of the size prefix
        + b"EVTS"
        + struct.pack("<HHH", 6, 8, 4)
        + b"\0\0"
        + struct.pack("<iI", tbl_pos - vt_pos, vec_pos - (tbl_pos + 4))
        + struct.pack("<I", len(arr))
        + arr.tobytes()
    )
    return struct.pack("<I", len(body)) + body


def write_aedat4(
    path: str | os.PathLike,
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    p: np.ndarray,
    sensor_size: tuple[int, int] = (128, 128),
    events_per_packet: int = 4096,
    stream_id: int = 0,
) -> None:
    """Writes polarity events to an uncompressed AEDAT 4.0 file.

    Parameters:
        path: output file.
        t, x, y, p: event fields, length N (t: int, microseconds; x, y: pixel; p: bool or 0/1).
        sensor_size: (width, height) written to the stream description.
        events_per_packet: events per packet (one packet per chunk).
    """
    n = len(t)
    if not (len(x) == len(y) == len(p) == n):
        raise ValueError("t, x, y and p must have the same length")
    events = np.zeros(n, dtype=OUTPUT_DTYPE)
    events["t"], events["x"], events["y"], events["on"] = t, x, y, np.asarray(p).astype(bool)
    header = _ioheader(
        _DESCRIPTION.format(sid=stream_id, w=int(sensor_size[0]), h=int(sensor_size[1]))
    )
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(struct.pack("<I", len(header)))
        f.write(header)
        for start in range(0, max(n, 1), events_per_packet):
            packet = _event_packet(events[start : start + events_per_packet])
            f.write(struct.pack("<II", stream_id, len(packet)))
            f.write(packet)


def _u16(buf, pos):
    return struct.unpack_from("<H", buf, pos)[0]


def _u32(buf, pos):
    return struct.unpack_from("<I", buf, pos)[0]


def _field(buf, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the flatbuffer table at ``table`` (None: absent)."""
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    slot = 4 + 2 * index
    if slot >= _u16(buf, vtable):
        return None
    offset = _u16(buf, vtable + slot)
    return table + offset if offset else None


def _decompress(data: bytes, compression: int) -> bytes:
    name = COMPRESSION.get(compression)
    if name == "none":
        return data
    if name in ("lz4", "lz4_high"):
        try:
            import lz4.frame
        except ImportError as err:
            raise ImportError(
                "this AEDAT4 file is LZ4-compressed: `pip install aedat` (or lz4)"
            ) from err
        return lz4.frame.decompress(data)
    if name in ("zstd", "zstd_high"):
        try:
            import zstandard
        except ImportError as err:
            raise ImportError(
                "this AEDAT4 file is Zstd-compressed: `pip install aedat` (or zstandard)"
            ) from err
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError(f"unknown AEDAT4 compression code {compression}")


def _event_streams(description: str) -> list[int]:
    root = ET.fromstring(description)
    if root.tag != "dv":
        raise ValueError("AEDAT4 description has no <dv> root")
    out = root.find("./node[@name='outInfo']")
    if out is None:
        raise ValueError("AEDAT4 description has no outInfo node")
    ids = []
    for node in out.findall("node"):
        ident = node.find("./attr[@key='typeIdentifier']")
        if ident is not None and (ident.text or "").strip() == "EVTS":
            ids.append(int(node.get("name")))
    return sorted(ids)


def read_aedat4(path: str | os.PathLike) -> np.ndarray:
    """Polarity events of the lowest-id event stream of an AEDAT4 file.

    Returns:
        structured array with fields ``t`` (uint64, us), ``x``, ``y`` (uint16), ``on`` (bool),
        like ``aedat.Decoder`` packets concatenated (what ``tonic.io.read_aedat4`` returns).
    """
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path}: not an AEDAT4 file (wrong magic number)")
    pos = len(MAGIC)
    hlen = _u32(data, pos)
    header = data[pos + 4 : pos + 4 + hlen]
    pos += 4 + hlen
    root = _u32(header, 0)
    f_comp = _field(header, root, 0)
    compression = struct.unpack_from("<i", header, f_comp)[0] if f_comp is not None else 0
    f_fdp = _field(header, root, 1)
    file_data_position = struct.unpack_from("<q", header, f_fdp)[0] if f_fdp is not None else -1
    f_desc = _field(header, root, 2)
    if f_desc is None:
        raise ValueError(f"{path}: AEDAT4 description is empty")
    s = f_desc + _u32(header, f_desc)
    description = header[s + 4 : s + 4 + _u32(header, s)].decode()
    streams = _event_streams(description)
    if not streams:
        raise ValueError(f"{path}: there are no events in the AEDAT file")
    target = streams[0]
    end = file_data_position if file_data_position > -1 else len(data)
    chunks = []
    while pos + 8 <= end:
        sid, size = struct.unpack_from("<II", data, pos)
        raw = data[pos + 8 : pos + 8 + size]
        pos += 8 + size
        if sid != target:
            continue
        buf = _decompress(raw, compression)[4:]  # drop the flatbuffer size prefix
        if buf[4:8] != b"EVTS":
            raise ValueError(f"{path}: packet of stream {sid} is not an EVTS packet")
        table = _u32(buf, 0)
        f_el = _field(buf, table, 0)
        if f_el is None:
            continue
        vec = f_el + _u32(buf, f_el)
        n = _u32(buf, vec)
        chunks.append(np.frombuffer(buf, dtype=EVENT_STRUCT, count=n, offset=vec + 4))
    events = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_STRUCT)
    # A fresh dtype object: callers (tonic) rename fields in place via ``events.dtype.names``.
    out = np.empty(len(events), dtype=np.dtype(OUTPUT_DTYPE.descr))
    for name in ("t", "x", "y", "on"):
        out[name] = events[name]
    return out
