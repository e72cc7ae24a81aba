"""The bootloader, driven with real flash frames (protocol.flash bytes) through its BootService.

Covers: a flash and its boot; refusals before any data (signature, model, downgrade) and the
engineer override; rollback when the new image fails its self-test; carrying parts over; resume
after a power cycle; and the power-cut property: a cut at any byte of a flash, reboot and
confirmation leaves a device that boots the old or the new image, never neither.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import flash as fc
from protocol.flash import FlashCode, FlashError
from protocol.keyfile import format_keyfile
from protocol.crypto import SharedKey

from posflash import provision
from firmware_sim.bootloader import META_FILES, Bootloader, BootResult
from firmware_sim.bootservice import BootService, config_checker, default_self_test, run_boot_sequence
from protocol.image import PartKind, parse_image
from firmware_sim.storage import DeviceStorage, PowerLostMidWrite
from protocol.registry import DeviceRecord
from protocol.sealed_config import config_public_key, seal_config
from tests.protocol.test_image import DEVICE_ID, MODEL, OVERRIDE, RELEASE, TRUST, app_bundle, make_image

CONFIG_KEY = bytes(range(60, 92))  # the device's X25519 config key
SELF_TEST = default_self_test(DEVICE_ID, MODEL, CONFIG_KEY)
_PIN_HASH = provision.hash_supervisor_pin("246810")


def plain_config_doc(device_id: str = DEVICE_ID, merchant: str = "示例市人民医院") -> bytes:
    keys = format_keyfile([SharedKey("k2026a", "AES-256-GCM", bytes(32))])
    return provision.build_config_document(
        device=DeviceRecord(device_id, MODEL, "SN0001"), merchant_name=merchant,
        terminals_csv="terminal_id,description\r\nT0001,门诊收费1号窗口\r\n", keys_text=keys, gateway={"url": "http://127.0.0.1:8443"},
        pin_hash=_PIN_HASH)


def config_doc(device_id: str = DEVICE_ID, merchant: str = "示例市人民医院") -> bytes:
    """As pos-flash provision config makes it: sealed to the device's config key."""
    return seal_config(plain_config_doc(device_id, merchant), device_id=device_id,
                       device_public=config_public_key(CONFIG_KEY), random=os.urandom)


class Device:
    """Storage, bootloader and boot service of one simulated device; `power_on` starts it afresh."""

    def __init__(self, root: Path, *, max_tries: int = 3) -> None:
        self.root = root
        self.max_tries = max_tries
        self.reboots: list[str] = []
        self.power_on()

    def power_on(self, cut_after: int | None = None, self_test=SELF_TEST) -> BootResult:
        self.storage = DeviceStorage(self.root)
        self.boot = Bootloader(self.storage, model=MODEL, device_id=DEVICE_ID, trust=TRUST, max_tries=self.max_tries,
                               check_config=config_checker(MODEL, DEVICE_ID, CONFIG_KEY))
        self.self_test = self_test
        self.service = BootService(self.boot, reboot=self._reboot)
        if cut_after is not None:
            self.storage.arm_power_cut(cut_after)
        self.running = run_boot_sequence(self.boot, self_test)
        return self.running

    def _reboot(self, reason: str) -> None:
        self.reboots.append(reason)
        self.running = run_boot_sequence(self.boot, self.self_test)

    def send(self, msg: fc.Request) -> list[fc.Reply]:
        replies, reboot = self.service.handle(*fc.encode(msg))
        encoded = [fc.decode(*fc.encode(r)) for r in replies]  # the bytes the host would read
        if reboot and self.service.reboot is not None:
            self.service.reboot(reboot)
        return encoded

    def call(self, msg: fc.Request) -> fc.Reply:
        (reply,) = self.send(msg)
        if isinstance(reply, fc.ErrorReply):
            raise reply.to_error()
        return reply

    def flash(self, data: bytes, *, chunk: int = 4096, stop_at: int | None = None, session: bytes | None = None) -> fc.Reply | None:
        image = parse_image(data)
        session = session or os.urandom(16)
        begin = self.call(fc.Begin(1, session, image.manifest.payload_size, chunk, image.header.raw))
        assert isinstance(begin, fc.BeginOk)
        offset = begin.resume_offset
        while offset < len(image.payload):
            if stop_at is not None and offset >= stop_at:
                return None
            piece = fc.make_chunk(session, offset, image.payload[offset : offset + begin.chunk_size])
            assert self.send(piece) == []
            offset += piece.length
        return self.call(fc.End(2, session))

    def status(self) -> dict:
        return self.boot.status(50)


def versions(result: BootResult) -> tuple[str | None, str | None]:
    return result.app_version, result.config_version


@pytest.fixture
def device(tmp_path):
    d = Device(tmp_path / "dev")
    d.flash(make_image("1.0.0", 1))
    assert versions(d.running) == ("1.0.0", None) and not d.running.trial
    return d


def test_empty_device_is_in_recovery_mode_and_takes_a_first_image(tmp_path):
    d = Device(tmp_path / "dev")
    assert d.running.slot is None and "recovery" in d.running.message
    end = d.flash(make_image("1.0.0", 1))
    assert isinstance(end, fc.EndOk) and end.slot == "a" and end.rebooting
    assert d.running.slot == "a" and d.status()["active"] == "a"


def test_flash_writes_the_inactive_slot_and_confirms_after_the_self_test(device):
    app = app_bundle("1.1.0")
    end = device.flash(make_image("1.1.0", 2, app=app))
    assert end.slot == "b" and device.reboots[-1] == "new image installed"
    assert device.running.slot == "b" and device.running.app == app
    s = device.status()
    assert (s["running"], s["active"], s["trial"]) == ("b", "b", None)
    assert s["slots"]["a"]["state"] == "confirmed" and s["min_counter"] == {"app": 2}
    assert any("confirmed healthy" in line for line in s["log"])
    # Power off and on: still the new image, verified again at boot.
    assert device.power_on().slot == "b"


@pytest.mark.parametrize("build, code", [
    (lambda: make_image("2.0.0", 5, model="HP-S2"), FlashCode.WRONG_MODEL),
    (lambda: make_image("0.9.0", 0), FlashCode.DOWNGRADE),
    (lambda: make_image("2.0.0", 5, device_id="D-OTHER"), FlashCode.WRONG_DEVICE),
    (lambda: make_image("2.0.0", 5, key=RELEASE.__class__("stranger", RELEASE.role, os.urandom(32))), FlashCode.UNKNOWN_SIGNER),
])
def test_refused_at_begin_before_any_data(device, build, code):
    data = build()
    before = device.boot.state
    header = parse_image(data).header
    session = os.urandom(16)
    with pytest.raises(FlashError) as info:
        device.call(fc.Begin(1, session, header.manifest.payload_size, 4096, header.raw))
    assert info.value.code is code and info.value.message
    assert device.boot.state == before  # nothing was written for it
    (reply,) = device.send(fc.make_chunk(session, 0, b"x" * 100))
    assert isinstance(reply, fc.ErrorReply) and reply.code == "no_session"


def test_bad_signature_refused(device):
    data = bytearray(make_image("2.0.0", 5))
    header = parse_image(bytes(data)).header
    data[header.size - 10] ^= 0xFF  # inside the signature
    bad = parse_image(bytes(data)).header
    with pytest.raises(FlashError) as info:
        device.call(fc.Begin(1, os.urandom(16), bad.manifest.payload_size, 4096, bad.raw))
    assert info.value.code is FlashCode.BAD_SIGNATURE


def test_downgrade_with_the_engineer_override_key(device):
    device.flash(make_image("2.0.0", 5))
    with pytest.raises(FlashError) as info:
        device.flash(make_image("1.0.1", 1))
    assert info.value.code is FlashCode.DOWNGRADE and "override" in info.value.message.lower()
    end = device.flash(make_image("1.0.1-rescue", 1, key=OVERRIDE, device_id=DEVICE_ID))
    assert end.slot == "a" and versions(device.running) == ("1.0.1-rescue", None)
    s = device.status()
    assert s["min_counter"] == {"app": 5}  # the override never lowers the device's security level
    assert s["slots"][s["running"]]["parts"]["app"]["override"] is True
    assert device.power_on().app_version == "1.0.1-rescue"  # and it keeps booting


def test_rollback_when_the_new_image_fails_its_self_test(device):
    broken = make_image("1.1.0", 2, app=b"this is not a zip: the app cannot start")
    end = device.flash(broken)
    assert end.slot == "b"
    assert versions(device.running) == ("1.0.0", None) and device.running.slot == "a"
    s = device.status()
    assert s["slots"]["b"]["state"] == "failed" and s["active"] == "a" and s["min_counter"] == {"app": 1}
    log = "\n".join(s["log"])
    assert log.count("self-test failed on slot b") == 3 and "rollback: slot b" in log
    assert device.power_on().slot == "a"


def test_a_trial_that_never_confirms_rolls_back_after_max_tries(device):
    device.service.reboot = None  # the power fails right after END: nobody runs the new image yet
    device.flash(make_image("1.1.0", 2))
    for attempt in range(3):  # three power-ons, each dying before the self-test ends
        result = device.boot.boot()
        assert result.slot == "b" and result.trial, attempt
    assert device.power_on().slot == "a"
    s = device.status()
    assert s["slots"]["b"]["state"] == "failed" and any("did not confirm its health in 3 boots" in line for line in s["log"])


def test_pending_image_blocks_a_new_flash_until_confirmed(device):
    device.service.reboot = None
    device.flash(make_image("1.1.0", 2))
    assert device.boot.boot().trial  # running on trial, not confirmed yet
    with pytest.raises(FlashError) as info:
        device.flash(make_image("1.2.0", 3))
    assert info.value.code is FlashCode.PENDING_CONFIRM
    done = device.call(fc.Confirm(3))
    assert isinstance(done, fc.Done) and "confirmed" in done.message
    with pytest.raises(FlashError) as info:
        device.call(fc.Confirm(4))
    assert info.value.code is FlashCode.NOTHING_TO_CONFIRM
    assert device.flash(make_image("1.2.0", 3)).slot == "a"


def test_manual_rollback_respects_the_counters(device):
    device.flash(make_image("1.0.1", 1))
    done = device.call(fc.Rollback(1))
    assert "slot a" in done.message and device.running.slot == "a"
    device.flash(make_image("2.0.0", 2))  # raises the minimum to 2: 1.0.x may not come back
    with pytest.raises(FlashError) as info:
        device.call(fc.Rollback(2))
    assert info.value.code is FlashCode.NO_ROLLBACK and "below" in info.value.message


def test_configuration_image_keeps_the_app_and_the_app_image_keeps_the_config(device):
    app1 = parse_image(make_image("1.0.0", 1)).part(PartKind.APP)
    cfg = config_doc()
    device.flash(make_image("cfg-1", 1, config=cfg, device_id=DEVICE_ID))
    assert versions(device.running) == ("1.0.0", "cfg-1") and device.running.config == cfg
    assert device.running.app == app1
    device.flash(make_image("1.1.0", 2))
    assert versions(device.running) == ("1.1.0", "cfg-1") and device.running.config == cfg
    assert device.power_on().config == cfg


def test_configuration_for_another_device_is_refused_at_end(device):
    with pytest.raises(FlashError) as info:
        device.flash(make_image("cfg-1", 1, config=config_doc("D-OTHER")))
    assert info.value.code is FlashCode.WRONG_DEVICE and "discarded" in info.value.message
    assert device.status()["download"] is None and device.running.slot == "a"


def test_chunks_out_of_step_and_a_wrong_payload(device):
    parsed = parse_image(make_image("1.1.0", 2))
    session = os.urandom(16)
    device.call(fc.Begin(1, session, parsed.manifest.payload_size, 1024, parsed.header.raw))
    first = fc.make_chunk(session, 0, parsed.payload[:1024])
    assert device.send(first) == [] and device.send(first) == []  # a repeat is harmless
    (gap,) = device.send(fc.make_chunk(session, 4096, parsed.payload[4096:5120]))
    assert gap.code == "chunk_gap" and gap.offset == 1024
    with pytest.raises(FlashError) as info:
        device.call(fc.End(2, session))
    assert info.value.code is FlashCode.INCOMPLETE
    # Right sizes and CRCs, wrong bytes: the full SHA-256 catches it and the download is dropped.
    offset = 1024
    while offset < len(parsed.payload):
        piece = bytes(min(1024, len(parsed.payload) - offset))
        device.send(fc.make_chunk(session, offset, piece))
        offset += len(piece)
    with pytest.raises(FlashError) as info:
        device.call(fc.End(3, session))
    assert info.value.code is FlashCode.HASH_MISMATCH
    again = device.call(fc.Begin(4, session, parsed.manifest.payload_size, 1024, parsed.header.raw))
    assert again.resume_offset == 0


def test_resume_after_a_power_cycle_mid_transfer(device):
    data = make_image("1.1.0", 2, size=30_000, noise=True)
    assert device.flash(data, chunk=4096, stop_at=12_288) is None
    s = device.status()
    assert s["download"]["offset"] == 12_288 and s["slots"]["b"]["state"] == "writing"
    device.power_on()  # the old image runs meanwhile
    assert device.running.slot == "a"
    parsed = parse_image(data)
    begin = device.call(fc.Begin(1, os.urandom(16), parsed.manifest.payload_size, 4096, parsed.header.raw))
    assert begin.resume_offset == 12_288 and begin.slot == "b"
    device.call(fc.Abort(2, begin.session))
    assert device.flash(data).slot == "b" and device.running.app_version == "1.1.0"


def test_a_torn_metadata_copy_falls_back_to_the_other(device):
    device.flash(make_image("1.1.0", 2))
    newest = device.boot.state.seq % 2
    path = device.root / META_FILES[newest]
    path.write_bytes(path.read_bytes()[:-7])  # a torn write of the newest copy
    result = device.power_on()
    assert result.slot in ("a", "b") and result.app_version in ("1.0.0", "1.1.0")


def test_garbage_frames_get_bad_message(device):
    replies, reboot = device.service.handle(fc.FlashType.END, b"\x00")
    assert reboot is None and replies[0].code == "bad_message"
    replies, _ = device.service.handle(fc.FlashType.BEGIN_OK, fc.encode(fc.BeginOk(1, bytes(16), 0, 1, "a"))[1])
    assert replies[0].code == "bad_message"


# ----------------------------------------------------------------------------- power cuts


OLD_IMAGE = make_image("1.0.0", 1, size=3000)
NEW_IMAGE = make_image("2.0.0", 2, size=9000, noise=True)
OLD_APP = parse_image(OLD_IMAGE).part(PartKind.APP)
NEW_APP = parse_image(NEW_IMAGE).part(PartKind.APP)


class _Recording(DeviceStorage):
    """Records the byte count after every write, so a sweep can cut between any two writes."""

    marks: list[int]

    def _write_fd(self, fd, data):
        super()._write_fd(fd, data)
        self.marks.append(self.bytes_written)

    def _metadata_op(self):
        super()._metadata_op()
        self.marks.append(self.bytes_written)


def _fresh_device(root: Path) -> Device:
    d = Device(root)
    d.flash(OLD_IMAGE)
    assert d.running.app == OLD_APP
    return d


def _flash_with_cut(root: Path, cut: int | None) -> bool:
    """Flash NEW over OLD with the power cut after `cut` bytes; True if the cut happened."""
    d = _fresh_device(root)
    d.storage.arm_power_cut(cut)
    try:
        d.flash(NEW_IMAGE, chunk=2048)
    except PowerLostMidWrite:
        return True
    return False


def _measure() -> tuple[int, list[int]]:
    with tempfile.TemporaryDirectory() as tmp:
        d = _fresh_device(Path(tmp))
        recording = _Recording(d.root)
        recording.marks = []
        d.boot.storage = recording
        start = recording.bytes_written
        d.flash(NEW_IMAGE, chunk=2048)
        assert d.running.app == NEW_APP
        return recording.bytes_written - start, sorted({m - start for m in recording.marks})


TOTAL, MARKS = _measure()


def _check_boots_old_or_new(root: Path) -> str:
    d = Device.__new__(Device)
    d.root, d.max_tries, d.reboots = root, 3, []
    result = d.power_on()
    assert result.slot is not None, "the device boots nothing after a power cut"
    assert result.app in (OLD_APP, NEW_APP)
    # And it is not stuck: the same flash, run again, completes (resuming where it can).
    d.flash(NEW_IMAGE, chunk=2048)
    assert d.running.app == NEW_APP and not d.running.trial
    return "new" if result.app == NEW_APP else "old"


@settings(deadline=None)
@given(st.integers(0, TOTAL))
def test_power_cut_at_any_byte_boots_old_or_new(cut):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cut_happened = _flash_with_cut(root, cut)
        assert cut_happened == (cut < TOTAL)
        _check_boots_old_or_new(root)


def test_power_cut_between_every_two_writes(tmp_path):
    """Deterministic sweep: every boundary between writes (metadata, renames, chunks, log)."""
    seen = set()
    for i, mark in enumerate(MARKS):
        for cut in {mark - 1, mark}:
            if cut < 0 or cut >= TOTAL:
                continue
            root = tmp_path / f"c{i}-{cut}"
            assert _flash_with_cut(root, cut)
            seen.add(_check_boots_old_or_new(root))
    assert seen == {"old", "new"}  # the sweep crossed the switch-over


@pytest.mark.slow
def test_power_cut_at_every_byte(tmp_path, request):
    """The exhaustive campaign (`make fuzz`, ~10 min): every single cut position of the flash above."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("exhaustive campaign: runs with `make fuzz` (pytest -m slow)")
    for cut in range(TOTAL):
        root = tmp_path / str(cut)
        assert _flash_with_cut(root, cut)
        _check_boots_old_or_new(root)
        shutil.rmtree(root)


def test_a_power_cut_reaches_the_simulator_not_the_link(device):
    cuts = []
    sent = []

    class Endpoint:
        def send_boot(self, frame_type, payload, tag=None):
            sent.append(frame_type)

    service = BootService(device.boot, power_cut=cuts.append)
    parsed = parse_image(make_image("1.1.0", 2))
    session = os.urandom(16)
    service.on_boot_frame(*fc.encode(fc.Begin(1, session, parsed.manifest.payload_size, 4096, parsed.header.raw)), Endpoint())
    assert sent == [fc.FlashType.BEGIN_OK]
    device.storage.arm_power_cut(100)
    service.on_boot_frame(*fc.encode(fc.make_chunk(session, 0, parsed.payload[:4096])), Endpoint())
    assert len(cuts) == 1 and isinstance(cuts[0], PowerLostMidWrite) and sent == [fc.FlashType.BEGIN_OK]
    assert device.power_on().slot == "a"


def test_a_configuration_in_clear_is_refused_at_end(device):
    """A configuration's keys travel sealed to the device; one in clear is not installed."""
    with pytest.raises(FlashError) as info:
        device.flash(make_image("cfg-1", 1, config=plain_config_doc(), device_id=DEVICE_ID))
    assert info.value.code is FlashCode.BAD_PART and "not sealed" in info.value.message
    assert device.running.slot == "a"


def test_a_configuration_sealed_to_another_key_is_refused(device):
    sealed = seal_config(plain_config_doc(), device_id=DEVICE_ID, device_public=config_public_key(bytes(32)),
                         random=os.urandom)
    with pytest.raises(FlashError) as info:
        device.flash(make_image("cfg-1", 1, config=sealed, device_id=DEVICE_ID))
    assert info.value.code is FlashCode.BAD_PART and "does not decrypt" in info.value.message


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_slot_images_and_metadata_are_private(device):
    """Finding 1: slot images were 0644 with the keys in them. Every file of the device's storage is
    0600 and every directory 0700, whatever the umask."""
    import stat

    device.flash(make_image("cfg-1", 1, config=config_doc(), device_id=DEVICE_ID))
    paths = [device.root, *device.root.rglob("*")]
    assert any(p.is_file() for p in paths)
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
