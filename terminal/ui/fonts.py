"""The CJK font the POS screens and receipts use: Noto Sans CJK SC (SIL Open Font License 1.1).

Debian's `fonts-noto-cjk` ships one collection file (`NotoSansCJK-Regular.ttc`) holding the
Japanese, Korean, Simplified and Traditional Chinese faces. Kivy's text providers open only face 0
of a collection (the Japanese one, whose shapes for some shared ideographs look wrong to a Chinese
reader), so we pick the Simplified Chinese face by its name table and, for Kivy, copy that one face
out of the collection into a standalone font file in a cache folder (tables copied verbatim: this
is a re-packaging, not a modification). Pillow opens the face directly by its index.

`coverage()` reads the face's cmap, so tests can prove that every character a screen shows has a
real glyph (none falls back to .notdef, the "tofu" box) without depending on fontTools.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from local_storage.atomic_file import write_atomically
from protocol.errors import CodedError

FONT_LICENSE = "SIL Open Font License 1.1"
FONT_FAMILY = "Noto Sans CJK SC"
# Where Debian/Ubuntu (fonts-noto-cjk) and Fedora (google-noto-sans-cjk-ttc-fonts) put the files.
SEARCH_DIRS = (
    "/usr/share/fonts/opentype/noto",
    "/usr/share/fonts/google-noto-cjk",
    "/usr/share/fonts/noto-cjk",
    "/usr/share/fonts/truetype/noto",
)
REGULAR_FILE = "NotoSansCJK-Regular.ttc"
BOLD_FILE = "NotoSansCJK-Bold.ttc"
# The environment variable a field engineer sets to point at the font folder on an unusual system.
FONT_DIR_ENV = "HIS_POS_FONT_DIR"


class FontMissing(CodedError, RuntimeError):
    """No usable CJK font: the message says what to install."""

    code = "font_missing"


@dataclass(frozen=True, slots=True)
class Face:
    """One face of a font file: the file, its index in a collection, and its family name."""

    path: Path
    index: int
    family: str


def find_font_file(name: str = REGULAR_FILE) -> Path:
    dirs = [os.environ[FONT_DIR_ENV]] if os.environ.get(FONT_DIR_ENV) else []
    for folder in (*dirs, *SEARCH_DIRS):
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    raise FontMissing(
        f"the Chinese font {name} ({FONT_FAMILY}, {FONT_LICENSE}) was not found in "
        f"{', '.join((*dirs, *SEARCH_DIRS))}; install it with `apt-get install fonts-noto-cjk` "
        f"(or `make setup`), or set {FONT_DIR_ENV} to the folder holding it"
    )


# --- the SFNT / TTC container, just enough of it -------------------------------------------------

def _face_offsets(data: bytes) -> list[int]:
    if data[:4] == b"ttcf":
        (count,) = struct.unpack_from(">I", data, 8)
        return list(struct.unpack_from(f">{count}I", data, 12))
    return [0]


def _tables(data: bytes, face_offset: int) -> dict[bytes, tuple[int, int, int]]:
    """tag -> (checksum, offset, length) of one face's table directory."""
    (num_tables,) = struct.unpack_from(">H", data, face_offset + 4)
    out: dict[bytes, tuple[int, int, int]] = {}
    for i in range(num_tables):
        tag, checksum, offset, length = struct.unpack_from(">4sIII", data, face_offset + 12 + 16 * i)
        out[tag] = (checksum, offset, length)
    return out


def _family_name(data: bytes, tables: dict[bytes, tuple[int, int, int]]) -> str:
    _, base, _ = tables[b"name"]
    _, count, string_offset = struct.unpack_from(">HHH", data, base)
    fallback = ""
    for i in range(count):
        platform, encoding, language, name_id, length, offset = struct.unpack_from(">6H", data, base + 6 + 12 * i)
        if name_id != 1 or platform != 3:
            continue
        raw = data[base + string_offset + offset: base + string_offset + offset + length]
        name = raw.decode("utf-16-be", errors="replace")
        if language == 0x0409:  # English (US): "Noto Sans CJK SC"
            return name
        fallback = fallback or name
    return fallback


def faces(path: Path) -> list[Face]:
    data = path.read_bytes()
    return [Face(path, i, _family_name(data, _tables(data, off))) for i, off in enumerate(_face_offsets(data))]


def find_face(path: Path, family: str = FONT_FAMILY) -> Face:
    for face in faces(path):
        if face.family == family:
            return face
    raise FontMissing(f"{path} has no face named {family!r}; found {[f.family for f in faces(path)]}")


def extract_face(face: Face, out_dir: Path) -> Path:
    """Copy one face of a collection into a standalone .otf (cached by the source's size and mtime)."""
    stat = face.path.stat()
    tag = hashlib.sha256(f"{face.path}|{stat.st_size}|{stat.st_mtime_ns}|{face.index}".encode()).hexdigest()[:12]
    target = out_dir / f"{face.family.replace(' ', '')}-{face.path.stem.split('-')[-1]}-{tag}.otf"
    if target.is_file():
        return target
    data = face.path.read_bytes()
    face_offset = _face_offsets(data)[face.index]
    sfnt_version = data[face_offset:face_offset + 4]
    tables = sorted(_tables(data, face_offset).items())
    count = len(tables)
    entry_selector = max(count.bit_length() - 1, 0)
    search_range = (1 << entry_selector) * 16
    header = bytearray(sfnt_version + struct.pack(">HHHH", count, search_range, entry_selector, count * 16 - search_range))
    body = bytearray()
    offset = 12 + 16 * count
    for tag, (checksum, src, length) in tables:
        header += struct.pack(">4sIII", tag, checksum, offset + len(body), length)
        body += data[src:src + length]
        body += b"\0" * (-len(body) % 4)  # tables start on 4-byte boundaries
    # Never a half-written font where Kivy would load it; two first runs at once each write their own temporary file.
    write_atomically(target, bytes(header) + bytes(body))
    return target


# --- which characters have glyphs ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Coverage:
    """The codepoints a face maps to a real glyph (glyph id != 0), as sorted ranges."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def __contains__(self, codepoint: object) -> bool:
        if not isinstance(codepoint, int):
            return False
        i = bisect.bisect_right(self.starts, codepoint) - 1
        return i >= 0 and codepoint <= self.ends[i]

    def missing(self, text: str) -> list[str]:
        """The characters of `text` that would render as .notdef boxes (control chars aside)."""
        return sorted({ch for ch in text if ch.isprintable() and ord(ch) not in self})


def coverage(face: Face) -> Coverage:
    data = face.path.read_bytes()
    _, base, _ = _tables(data, _face_offsets(data)[face.index])[b"cmap"]
    (_, count) = struct.unpack_from(">HH", data, base)
    subtables: dict[tuple[int, int], int] = {}
    for i in range(count):
        platform, encoding, offset = struct.unpack_from(">HHI", data, base + 4 + 8 * i)
        subtables[(platform, encoding)] = base + offset
    ranges: list[tuple[int, int]] = []
    if (3, 10) in subtables:  # format 12: the full Unicode map
        at = subtables[(3, 10)]
        (groups,) = struct.unpack_from(">I", data, at + 12)
        for g in range(groups):
            start, end, glyph = struct.unpack_from(">III", data, at + 16 + 12 * g)
            if glyph == 0:
                start += 1  # the first char of this group maps to .notdef
            if start <= end:
                ranges.append((start, end))
    elif (3, 1) in subtables:  # format 4: the BMP
        ranges = _format4(data, subtables[(3, 1)])
    else:
        raise FontMissing(f"{face.path} face {face.index} has no Unicode cmap")
    ranges.sort()
    return Coverage(tuple(r[0] for r in ranges), tuple(r[1] for r in ranges))


def _format4(data: bytes, at: int) -> list[tuple[int, int]]:
    (seg_x2,) = struct.unpack_from(">H", data, at + 6)
    segs = seg_x2 // 2
    ends = struct.unpack_from(f">{segs}H", data, at + 14)
    starts = struct.unpack_from(f">{segs}H", data, at + 16 + seg_x2)
    deltas = struct.unpack_from(f">{segs}h", data, at + 16 + 2 * seg_x2)
    range_at = at + 16 + 3 * seg_x2
    offsets = struct.unpack_from(f">{segs}H", data, range_at)
    out: list[tuple[int, int]] = []
    for i in range(segs):
        for cp in range(starts[i], ends[i] + 1):
            if cp == 0xFFFF:
                continue
            if offsets[i] == 0:
                glyph = (cp + deltas[i]) & 0xFFFF
            else:
                addr = range_at + 2 * i + offsets[i] + 2 * (cp - starts[i])
                (glyph,) = struct.unpack_from(">H", data, addr)
                glyph = (glyph + deltas[i]) & 0xFFFF if glyph else 0
            if glyph:
                out.append((cp, cp))
    return out


# --- the fonts the app and the receipts use -------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UiFonts:
    regular: Path  # standalone files Kivy can open
    bold: Path
    regular_face: Face  # the faces inside the collection, for Pillow
    bold_face: Face


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "his-smartpos" / "fonts"


def prepare_fonts(cache_dir: Path | None = None) -> UiFonts:
    """Locate the faces and make standalone copies for Kivy; raises FontMissing with advice."""
    cache = cache_dir or default_cache_dir()
    regular = find_face(find_font_file(REGULAR_FILE))
    try:
        bold = find_face(find_font_file(BOLD_FILE))
    except FontMissing:
        bold = regular  # the amount is still legible in the regular weight
    return UiFonts(extract_face(regular, cache), extract_face(bold, cache), regular, bold)


KIVY_FONT_NAME = "PosCJK"


def register_kivy_fonts(fonts: UiFonts) -> str:
    """Register the face with Kivy under KIVY_FONT_NAME (regular + bold) and return the name."""
    from kivy.core.text import LabelBase  # imported late: Kivy must not start before the env is set

    LabelBase.register(KIVY_FONT_NAME, fn_regular=str(fonts.regular), fn_bold=str(fonts.bold))
    return KIVY_FONT_NAME
