"""The device's bootloader: two image slots (A/B), boot with trial and rollback, and flash commands.

Storage (firmware_sim.storage, under the device directory):

    boot/trust.json          the public keys the device trusts (written at provisioning)
    boot/meta.0, meta.1      slot metadata, two copies: magic | seq u64 | len u32 | JSON | CRC-32
    boot/slot_a/, slot_b/    the images of each slot: 0.img (as flashed), 1.img (a part carried over)
    boot/incoming.json/.img  a download in progress (header + payload so far): what a resume continues
    boot/boot.log            recent events, what `pos-flash info` shows

Why a power cut at any byte leaves a device that boots the old or the new image:
- metadata is written alternately to meta.0 and meta.1 with a rising sequence number and a CRC; a
  torn write spoils only the copy being written, and boot takes the newest valid copy;
- a flash writes only the slot that is not running, and marks it `writing` (not bootable) in the
  metadata before touching it; the slot becomes `pending` only after every byte is written, synced
  and verified; the confirmed slot is never touched while it is the fallback;
- every boot verifies the slot's images (signature, hash, model, counters) before using them.

Boot: a `pending` slot is tried `max_tries` times (the count is saved before each try); the image
must call `confirm()` (its self-test passed) or the bootloader goes back to the confirmed slot by
itself. Confirming raises the device's minimum security counters to the image's (release keys
only), so an older image cannot come back, except one signed with the engineer override key.

Plugging in: firmware_sim.bootservice holds the endpoint's boot handler (flash commands in, replies
out) and the power-on sequence the simulator runs (boot, self-test, confirm or reboot again).
"""

from __future__ import annotations

import hashlib
import logging
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable

from protocol import flash as fc
from protocol.errors import ProtocolError
from protocol.flash import FlashCode, FlashError
from protocol.strictjson import dumps_compact, loads_object

from protocol.image import Image, ImageHeader, PartKind, check_acceptable, parse_header, parse_image, verify_signature
from protocol.trust import KeyRole, TrustStore, fingerprint, parse_trust
from firmware_sim.storage import DeviceStorage

log = logging.getLogger("firmware_sim.bootloader")

BOOTLOADER_VERSION = "1.0"
# Boots a new image gets to confirm its health before the bootloader rolls back.
DEFAULT_MAX_TRIES = 3
DEFAULT_SLOT_CAPACITY = 32 * 1024 * 1024
DEFAULT_MAX_CHUNK = fc.MAX_CHUNK
LOG_MAX_BYTES = 64 * 1024
LOG_KEEP_LINES = 300
HEADER_READ = 12 + 16 * 1024 + 64  # enough for any image header (protocol.image.MAX_MANIFEST)

TRUST_FILE = "boot/trust.json"
META_FILES = ("boot/meta.0", "boot/meta.1")
INCOMING_JSON = "boot/incoming.json"
INCOMING_IMG = "boot/incoming.img"
LOG_FILE = "boot/boot.log"
SLOTS = ("a", "b")
_META_MAGIC = b"HPBM"
_META_HEAD = struct.Struct(">4sQI")


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def slot_dir(slot: str) -> str:
    return f"boot/slot_{slot}"


# ----------------------------------------------------------------------------- metadata


@dataclass(frozen=True, slots=True)
class ImageRef:
    file: str
    digest: str  # ImageHeader.digest
    version: str
    counter: int
    key_id: str
    override: bool
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SlotRecord:
    state: str  # "writing" (not bootable), "pending" (to try), "confirmed", "failed"
    images: tuple[ImageRef, ...] = ()
    parts: dict[str, int] = field(default_factory=dict)  # part kind -> index in images

    def version_of(self, kind: str) -> str | None:
        i = self.parts.get(kind)
        return None if i is None else self.images[i].version


@dataclass(frozen=True, slots=True)
class BootState:
    seq: int = 0
    active: str | None = None  # the confirmed slot: the fallback
    trial: str | None = None  # the pending slot the next boot tries
    tries_left: int = 0
    running: str | None = None  # what the last boot started (None: no image, recovery mode)
    boot_count: int = 0
    min_counter: dict[str, int] = field(default_factory=dict)
    slots: dict[str, SlotRecord | None] = field(default_factory=lambda: {"a": None, "b": None})

    def to_json(self) -> bytes:
        return dumps_compact({
            "active": self.active, "trial": self.trial, "tries_left": self.tries_left, "running": self.running,
            "boot_count": self.boot_count, "min_counter": self.min_counter,
            "slots": {s: None if r is None else {
                "state": r.state, "parts": r.parts,
                "images": [{"file": i.file, "digest": i.digest, "version": i.version, "counter": i.counter,
                            "key_id": i.key_id, "override": i.override, "kinds": list(i.kinds)} for i in r.images],
            } for s, r in self.slots.items()},
        })

    @staticmethod
    def from_json(seq: int, raw: bytes) -> "BootState":
        obj = loads_object(raw, what="boot metadata")
        slots: dict[str, SlotRecord | None] = {}
        for s in SLOTS:
            r = obj["slots"][s]  # type: ignore[index]  # the bootloader's own metadata file (to_json above); a damaged one fails here and boots recovery
            slots[s] = None if r is None else SlotRecord(
                r["state"], tuple(ImageRef(i["file"], i["digest"], i["version"], i["counter"], i["key_id"],
                                           i["override"], tuple(i["kinds"])) for i in r["images"]),
                dict(r["parts"]))
        return BootState(seq, obj["active"], obj["trial"], obj["tries_left"], obj["running"],  # type: ignore[arg-type]  # the bootloader's own metadata file (to_json above); a damaged one fails here and boots recovery
                         obj["boot_count"], dict(obj["min_counter"]), slots)  # type: ignore[arg-type, call-overload]  # the bootloader's own metadata file (to_json above); a damaged one fails here and boots recovery


def _encode_meta(state: BootState) -> bytes:
    body = state.to_json()
    head = _META_HEAD.pack(_META_MAGIC, state.seq, len(body)) + body
    return head + struct.pack(">I", zlib.crc32(head))


def _decode_meta(raw: bytes | None) -> BootState | None:
    """A metadata copy, or None when it is missing, torn or corrupt."""
    if raw is None or len(raw) < _META_HEAD.size + 4:
        return None
    magic, seq, n = _META_HEAD.unpack_from(raw)
    if magic != _META_MAGIC or len(raw) != _META_HEAD.size + n + 4:
        return None
    if struct.unpack_from(">I", raw, len(raw) - 4)[0] != zlib.crc32(raw[:-4]):
        return None
    try:
        return BootState.from_json(seq, raw[_META_HEAD.size : -4])
    except (ProtocolError, KeyError, TypeError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------- boot results


@dataclass(frozen=True, slots=True)
class BootResult:
    slot: str | None  # None: no bootable image (recovery mode: only flashing works)
    trial: bool  # a new image on trial: it must confirm() its health
    app: bytes | None
    config: bytes | None
    app_version: str | None
    config_version: str | None
    message: str  # one line for the log and the screen

    @property
    def version(self) -> str:
        return self.app_version or self.config_version or "none"


@dataclass(slots=True)
class _Download:
    session: bytes
    header: ImageHeader
    slot: str
    offset: int
    chunk_size: int
    hasher: "hashlib._Hash"
    window: bytes = b""  # the last payload bytes written (protocol.flash.WINDOW_SIZE): the next chunk's dictionary


ConfigCheck = Callable[[bytes], None]  # raises FlashError(BAD_PART) for an unusable config part


class Bootloader:
    def __init__(self, storage: DeviceStorage, *, model: str, device_id: str, trust: TrustStore | None = None,
                 max_tries: int = DEFAULT_MAX_TRIES, slot_capacity: int = DEFAULT_SLOT_CAPACITY,
                 max_chunk: int = DEFAULT_MAX_CHUNK, check_config: ConfigCheck | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.model = model
        self.device_id = device_id
        if trust is None:
            raw = storage.read(TRUST_FILE)
            if raw is None:
                raise FlashError(FlashCode.BAD_KEY, f"{storage.root / TRUST_FILE} is missing: provision the device first")
            trust = parse_trust(raw.decode("utf-8"), str(storage.root / TRUST_FILE))
        self.trust = trust
        self.max_tries = max_tries
        self.slot_capacity = slot_capacity
        self.max_chunk = max_chunk
        self.check_config = check_config
        self.clock = clock
        self._lock = threading.RLock()
        self._download: _Download | None = None
        self.state = self._load_meta()

    # ----------------------------------------------------------------- metadata and log

    def _load_meta(self) -> BootState:
        copies = [_decode_meta(self.storage.read(name)) for name in META_FILES]
        valid = [c for c in copies if c is not None]
        return max(valid, key=lambda s: s.seq) if valid else BootState()

    def _save(self, state: BootState) -> None:
        state = replace(state, seq=self.state.seq + 1)
        self.storage.write_in_place(META_FILES[state.seq % 2], _encode_meta(state))
        self.state = state

    def _log(self, message: str) -> None:
        log.info("%s", message)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.clock()))
        self.storage.append(LOG_FILE, f"{stamp} {message}\n".encode("utf-8"))
        if self.storage.size(LOG_FILE) > LOG_MAX_BYTES:
            lines = (self.storage.read(LOG_FILE) or b"").splitlines(keepends=True)[-LOG_KEEP_LINES:]
            self.storage.write_atomic(LOG_FILE, b"".join(lines))

    def recent_log(self, n: int) -> list[str]:
        if n <= 0:
            return []
        raw = self.storage.read(LOG_FILE) or b""
        return [line.decode("utf-8", "replace") for line in raw.splitlines()[-n:]]

    # ----------------------------------------------------------------- verification

    def _check_image(self, data: bytes, ref: ImageRef | None = None, kinds: list[str] | None = None) -> Image:
        image = parse_image(data, max_payload=self.slot_capacity)
        signer = verify_signature(image.header, self.trust)
        check_acceptable(image.header, signer, model=self.model, device_id=self.device_id,
                         min_counters=self.state.min_counter, kinds=kinds)
        if ref is not None and image.header.digest != ref.digest:
            raise FlashError(FlashCode.HASH_MISMATCH, f"{ref.file} is not the image the metadata names")
        return image

    def _load_slot(self, slot: str) -> BootResult:
        record = self.state.slots[slot]
        if record is None or record.state not in ("pending", "confirmed"):
            raise FlashError(FlashCode.NO_IMAGE, f"slot {slot} holds no bootable image")
        images: list[Image] = []
        for index, ref in enumerate(record.images):
            data = self.storage.read(ref.file)
            if data is None:
                raise FlashError(FlashCode.NO_IMAGE, f"{ref.file} is missing")
            # Counters apply to the parts used from an image (a carried-over image may hold others).
            used = [kind for kind, i in record.parts.items() if i == index]
            images.append(self._check_image(data, ref, used))
        parts = {kind: images[i].part(PartKind(kind)) for kind, i in record.parts.items()}
        return BootResult(slot, record.state == "pending", parts.get("app"), parts.get("config"),
                          record.version_of("app"), record.version_of("config"), "")

    # ----------------------------------------------------------------- boot, confirm, rollback

    def boot(self) -> BootResult:
        """Power-on: pick the slot to run (trial, else confirmed), verify it, and say what runs."""
        with self._lock:
            self._download = None
            for directory in ("boot", *(slot_dir(s) for s in SLOTS)):
                self.storage.remove_temporaries(directory)
            st = replace(self.state, boot_count=self.state.boot_count + 1)
            trial = st.trial
            if trial is not None:
                record = st.slots[trial]
                if record is not None and record.state == "pending" and st.tries_left > 0:
                    attempt = self.max_tries - st.tries_left + 1
                    self._save(replace(st, tries_left=st.tries_left - 1, running=trial))
                    try:
                        result = self._load_slot(trial)
                    except FlashError as exc:
                        self._log(f"boot slot {trial}: refused ({exc.code.value}: {exc.detail}); back to slot {st.active}")
                        st = self._mark_failed(self.state, trial)
                    else:
                        msg = f"boot {st.boot_count}: slot {trial} on trial (try {attempt} of {self.max_tries}): {self._describe(trial)}"
                        self._log(msg)
                        return replace(result, message=msg)
                else:
                    self._log(f"rollback: slot {trial} ({self._describe(trial)}) did not confirm its health "
                              f"in {self.max_tries} boots; back to slot {st.active}")
                    st = self._mark_failed(st, trial)
            for candidate in (st.active, *(s for s in SLOTS if s != st.active)):
                if not candidate:
                    continue
                record = st.slots.get(candidate)
                if record is None or record.state != "confirmed":
                    continue
                self._save(replace(st, running=candidate, active=candidate))
                try:
                    result = self._load_slot(candidate)
                except FlashError as exc:
                    self._log(f"boot slot {candidate}: refused ({exc.code.value}: {exc.detail})")
                    st = self._mark_failed(self.state, candidate)
                    continue
                msg = f"boot {st.boot_count}: slot {candidate}: {self._describe(candidate)}"
                self._log(msg)
                return replace(result, message=msg)
            self._save(replace(st, running=None))
            msg = f"boot {st.boot_count}: no bootable image; recovery mode (flash an image)"
            self._log(msg)
            return BootResult(None, False, None, None, None, None, msg)

    def _mark_failed(self, st: BootState, slot: str) -> BootState:
        record = st.slots[slot]
        slots = dict(st.slots)
        slots[slot] = None if record is None else replace(record, state="failed")
        st = replace(st, slots=slots, trial=None if st.trial == slot else st.trial,
                     active=None if st.active == slot else st.active, tries_left=0 if st.trial == slot else st.tries_left)
        self._save(st)
        return self.state

    def _describe(self, slot: str) -> str:
        record = self.state.slots.get(slot)
        if record is None:
            return "empty"
        parts = [f"{k} {record.version_of(k)}" for k in ("app", "config") if k in record.parts]
        return ", ".join(parts) or "no parts"

    def confirm(self) -> str:
        """The running trial image passed its self-test: keep it, and raise the minimum counters."""
        with self._lock:
            st = self.state
            if st.running is None:
                raise FlashError(FlashCode.NO_IMAGE, "no image is running")
            if st.trial is None or st.running != st.trial:
                raise FlashError(FlashCode.NOTHING_TO_CONFIRM, f"slot {st.running} is already confirmed")
            slot = st.trial
            record = st.slots[slot]
            assert record is not None
            minimum = dict(st.min_counter)
            for kind, i in record.parts.items():
                ref = record.images[i]
                if not ref.override:  # override images never move the device's security level
                    minimum[kind] = max(minimum.get(kind, 0), ref.counter)
            slots = dict(st.slots)
            slots[slot] = replace(record, state="confirmed")
            self._save(replace(st, slots=slots, active=slot, trial=None, tries_left=0, min_counter=minimum))
            counters = ", ".join(f"{k} {v}" for k, v in sorted(minimum.items())) or "none"
            msg = f"slot {slot} confirmed healthy: {self._describe(slot)}; minimum security counters: {counters}"
            self._log(msg)
            return msg

    def health_failed(self, reason: str) -> None:
        """The running image's self-test failed; the simulator reboots next (a trial rolls back in time)."""
        with self._lock:
            self._log(f"self-test failed on slot {self.state.running}: {reason}")

    def rollback(self) -> str:
        """Go back to the other slot at the next boot (a trial is abandoned; or the previous image)."""
        with self._lock:
            st = self.state
            if st.trial is not None and st.running == st.trial:
                self._mark_failed(st, st.trial)
                msg = f"rollback requested: slot {st.trial} abandoned; the next boot runs slot {st.active}"
                self._log(msg)
                return msg
            if st.running is None:
                raise FlashError(FlashCode.NO_ROLLBACK, "no image is running")
            target = other(st.running)
            try:
                self._load_slot(target)  # verifies signature, hash and counters now, not at boot
            except FlashError as exc:
                raise FlashError(FlashCode.NO_ROLLBACK, f"slot {target} cannot run: {exc.detail}") from None
            self._save(replace(st, active=target))
            msg = f"rollback requested: the next boot runs slot {target} ({self._describe(target)})"
            self._log(msg)
            return msg

    # ----------------------------------------------------------------- flashing

    def begin(self, msg: fc.Begin) -> fc.BeginOk:
        with self._lock:
            header = parse_header(msg.header)
            if header.size != len(msg.header):
                raise FlashError(FlashCode.BAD_MESSAGE, "BEGIN carries bytes after the image header")
            signer = verify_signature(header, self.trust)
            check_acceptable(header, signer, model=self.model, device_id=self.device_id, min_counters=self.state.min_counter)
            m = header.manifest
            if msg.total != m.payload_size:
                raise FlashError(FlashCode.BAD_MESSAGE, f"BEGIN total {msg.total} is not the manifest's payload size {m.payload_size}")
            if m.payload_size > self.slot_capacity:
                raise FlashError(FlashCode.TOO_LARGE, f"payload of {m.payload_size} bytes exceeds this device's slot of {self.slot_capacity}")
            st = self.state
            if st.running is not None and st.running == st.trial:
                raise FlashError(FlashCode.PENDING_CONFIRM, f"slot {st.running} ({self._describe(st.running)}) is on trial")
            target = other(st.running) if st.running else (other(st.active) if st.active else "a")
            chunk_size = max(1, min(msg.chunk_size, self.max_chunk))
            offset = self._resume_offset(header, target)
            if offset is None:
                self._start_download(header, target)
                offset, hasher, window = 0, hashlib.sha256(), b""
                self._log(f"flash {m.version} ({'+'.join(k.value for k in m.kinds)}, {m.payload_size} bytes, "
                          f"key {m.key_id}{' OVERRIDE' if signer.role is KeyRole.OVERRIDE else ''}) into slot {target}")
            else:
                data = self.storage.read(INCOMING_IMG) or b""
                hasher = hashlib.sha256(data[header.size :])
                window = data[header.size :][-fc.WINDOW_SIZE:]
                self._log(f"flash {m.version} into slot {target}: resuming at byte {offset} of {m.payload_size}")
            self._download = _Download(msg.session, header, target, offset, chunk_size, hasher, window)
            return fc.BeginOk(msg.req, msg.session, offset, chunk_size, target)

    def _resume_offset(self, header: ImageHeader, target: str) -> int | None:
        record = self.state.slots[target]
        raw = self.storage.read(INCOMING_JSON)
        if raw is None or record is None or record.state != "writing":
            return None
        try:
            info = loads_object(raw, what="incoming")
        except ProtocolError:
            return None
        if info.get("digest") != header.digest or info.get("slot") != target:
            return None
        size = self.storage.size(INCOMING_IMG)
        if size < header.size or self.storage.read(INCOMING_IMG, limit=header.size) != header.raw:
            return None
        return min(size - header.size, header.manifest.payload_size)

    def _start_download(self, header: ImageHeader, target: str) -> None:
        st = self.state
        slots = dict(st.slots)
        slots[target] = SlotRecord("writing")
        # The target stops being bootable before any of its bytes change.
        self._save(replace(st, slots=slots, trial=None if st.trial == target else st.trial,
                           active=None if st.active == target else st.active))
        self.storage.remove(INCOMING_IMG)
        self.storage.remove(INCOMING_JSON)
        for name in self.storage.list(slot_dir(target)):
            self.storage.remove(name)
        self.storage.write_atomic(INCOMING_JSON, dumps_compact({"digest": header.digest, "slot": target,
                                                                 "version": header.manifest.version}))
        self.storage.write_atomic(INCOMING_IMG, header.raw)

    def _session(self, session: bytes) -> _Download:
        d = self._download
        if d is None or d.session != session:
            raise FlashError(FlashCode.NO_SESSION, "no flash session with this id is open (BEGIN first)")
        return d

    def chunk(self, msg: fc.Chunk) -> None:
        with self._lock:
            d = self._session(msg.session)
            total = d.header.manifest.payload_size
            if msg.offset != d.offset:
                if msg.offset + msg.length <= d.offset:
                    return  # a repeat of data already written: harmless
                raise FlashError(FlashCode.CHUNK_GAP, f"chunk at offset {msg.offset}; the device expects {d.offset}", offset=d.offset)
            data = fc.chunk_data(msg, d.chunk_size, d.window)
            if d.offset + len(data) > total:
                raise FlashError(FlashCode.BAD_CHUNK, f"chunk at offset {msg.offset} runs past the payload's end ({total})", offset=d.offset)
            self.storage.append(INCOMING_IMG, data)
            d.hasher.update(data)
            d.offset += len(data)
            d.window = (d.window + data)[-fc.WINDOW_SIZE:]

    def end(self, msg: fc.End) -> fc.EndOk:
        with self._lock:
            d = self._session(msg.session)
            m = d.header.manifest
            if d.offset != m.payload_size:
                raise FlashError(FlashCode.INCOMPLETE, f"END after {d.offset} of {m.payload_size} bytes", offset=d.offset)
            if d.hasher.hexdigest() != m.payload_sha256:
                self._discard_download()
                raise FlashError(FlashCode.HASH_MISMATCH, "the received payload's SHA-256 differs from the signed manifest; "
                                 "the device discarded the download and the next flash starts from the beginning")
            # Verify what is on the medium, not what went through memory.
            data = self.storage.read(INCOMING_IMG) or b""
            try:
                image = self._check_image(data)
                if self.check_config is not None and (config := image.part(PartKind.CONFIG)) is not None:
                    self.check_config(config)
            except FlashError as exc:
                self._discard_download()
                raise FlashError(exc.code, exc.detail + " (the device discarded the download)") from None
            record = self._install(image, d.slot)
            self._download = None
            self._log(f"flash complete: slot {d.slot} now holds {self._describe(d.slot)}; rebooting to try it")
            assert record is not None
            return fc.EndOk(msg.req, msg.session, d.slot, m.version, True)

    def _install(self, image: Image, target: str) -> SlotRecord:
        """Move the verified download into the target slot, carry missing parts over, make it pending."""
        m = image.manifest
        signer = self.trust.get(m.key_id)
        refs = [ImageRef(f"{slot_dir(target)}/0.img", image.header.digest, m.version, m.security_counter, m.key_id,
                         signer is not None and signer.role is KeyRole.OVERRIDE, tuple(k.value for k in m.kinds))]
        parts = {k.value: 0 for k in m.kinds}
        source_slot = self.state.running or self.state.active
        source = self.state.slots.get(source_slot) if source_slot else None
        if source is not None and source.state in ("confirmed", "pending"):
            for kind, i in source.parts.items():
                if kind in parts:
                    continue
                ref = source.images[i]
                existing = next((j for j, r in enumerate(refs) if r.digest == ref.digest), None)
                if existing is None:
                    name = f"{slot_dir(target)}/{len(refs)}.img"
                    self.storage.copy(ref.file, name)
                    refs.append(replace(ref, file=name))
                    existing = len(refs) - 1
                parts[kind] = existing
        self.storage.rename(INCOMING_IMG, refs[0].file)
        self.storage.remove(INCOMING_JSON)
        record = SlotRecord("pending", tuple(refs), parts)
        slots = dict(self.state.slots)
        slots[target] = record
        self._save(replace(self.state, slots=slots, trial=target, tries_left=self.max_tries))
        return record

    def _discard_download(self) -> None:
        self._download = None
        self.storage.remove(INCOMING_IMG)
        self.storage.remove(INCOMING_JSON)

    def abort(self, msg: fc.Abort) -> str:
        with self._lock:
            if self._download is None and self.storage.read(INCOMING_JSON) is None:
                return "no download to abort"
            self._discard_download()
            self._log("flash aborted by the host; the partial download was discarded")
            return "download discarded"

    # ----------------------------------------------------------------- status

    def status(self, log_lines: int = 20) -> dict[str, object]:
        """What INFO answers (and `pos-flash info` shows)."""
        with self._lock:
            st = self.state
            slots: dict[str, object] = {}
            for s in SLOTS:
                r = st.slots[s]
                if r is None:
                    slots[s] = {"state": "empty"}
                    continue
                slots[s] = {"state": r.state, "parts": {
                    kind: {"version": r.images[i].version, "counter": r.images[i].counter, "key_id": r.images[i].key_id,
                           "override": r.images[i].override, "digest": r.images[i].digest}
                    for kind, i in sorted(r.parts.items())}}
            download: dict[str, object] | None = None
            raw = self.storage.read(INCOMING_JSON)
            if raw is not None:
                try:
                    info = loads_object(raw, what="incoming")
                    size = self.storage.size(INCOMING_IMG)
                    header = parse_header(self.storage.read(INCOMING_IMG, limit=HEADER_READ) or b"")
                    download = {"version": info.get("version"), "slot": info.get("slot"),
                                "offset": max(0, size - header.size), "total": header.manifest.payload_size}
                except (ProtocolError, FlashError):
                    download = None
            return {
                "device_id": self.device_id, "model": self.model, "bootloader": BOOTLOADER_VERSION,
                "running": st.running, "active": st.active, "trial": st.trial, "tries_left": st.tries_left,
                "max_tries": self.max_tries, "boot_count": st.boot_count, "min_counter": dict(st.min_counter),
                "slots": slots, "download": download, "slot_capacity": self.slot_capacity, "max_chunk": self.max_chunk,
                "trusted_keys": [{"key_id": k.key_id, "role": k.role.value, "fingerprint": fingerprint(k.public)}
                                 for k in self.trust.keys],
                "log": self.recent_log(log_lines),
            }
