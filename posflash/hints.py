"""What a field engineer should do about each flash error code: the advice pos-flash prints.

The codes and their meaning belong to the protocol (protocol/flash.py); this advice belongs to the
field tool, because it quotes pos-flash's own commands and options. docs/field-engineer.md lists the
same advice per code. `advise` appends it to an error's message, once.
"""

from __future__ import annotations

from protocol.flash import FlashCode, FlashError

HINTS: dict[FlashCode, str] = {
    FlashCode.BAD_MAGIC: "this is not a POS image file; pick the .img file that `pos-flash build` wrote",
    FlashCode.TRUNCATED: "the file is incomplete (an interrupted copy or download); copy it again",
    FlashCode.TOO_LARGE: "the image does not fit this device; build a smaller image",
    FlashCode.BAD_MANIFEST: "the image was not written by `pos-flash build` or was edited; rebuild it",
    FlashCode.UNSUPPORTED_FORMAT: "this image needs a newer pos-flash or bootloader; update pos-flash",
    FlashCode.TRAILING_DATA: "the file has extra bytes after the image; copy the original file again",
    FlashCode.HASH_MISMATCH: "the payload does not match its signed manifest (damaged or tampered); copy or rebuild the image",
    FlashCode.BAD_PART: "the payload is not valid for its kind; rebuild the image from correct inputs",
    FlashCode.BAD_SIGNATURE: "the image was changed after signing, or signed with another key than it names; rebuild it, never edit an image",
    FlashCode.UNKNOWN_SIGNER: "the device does not trust this signing key; sign with a key the device trusts (`pos-flash info` lists them)",
    FlashCode.WRONG_MODEL: "the image is for another POS model; build it with --model set to the device's model",
    FlashCode.WRONG_DEVICE: "the image is bound to another device; build it for this device's device_id",
    FlashCode.DOWNGRADE: "the device refuses older security levels; flash an image with a counter at least the device's minimum, or see 'Engineer override' in docs/field-engineer.md",
    FlashCode.BAD_MESSAGE: "the device and pos-flash disagree on the protocol; update pos-flash",
    FlashCode.NO_SESSION: "the flash session was lost (device rebooted?); run the same flash command again, it resumes",
    FlashCode.CHUNK_GAP: "data arrived out of step; run the same flash command again, it resumes",
    FlashCode.BAD_CHUNK: "data was damaged on the way; run the same flash command again, it resumes",
    FlashCode.INCOMPLETE: "the transfer stopped early; run the same flash command again, it resumes",
    FlashCode.PENDING_CONFIRM: "the running image has not confirmed its health yet; wait for it (`pos-flash info`) or reboot the device so it rolls back",
    FlashCode.NOTHING_TO_CONFIRM: "the running image is already confirmed; nothing to do",
    FlashCode.NO_ROLLBACK: "there is no other image the device may boot; flash a good image instead",
    FlashCode.NO_IMAGE: "the device has no bootable image; flash one (see 'Recovery' in docs/field-engineer.md)",
    FlashCode.STORAGE: "the device could not write its flash memory; retry, and if it persists the device needs service",
    FlashCode.PORT_BUSY: "stop the bridge service (it holds the port) and run pos-flash again",
    FlashCode.NO_DEVICE: "check the cable and the --port URL, and that the device (or pos-sim) is on",
    FlashCode.UNKNOWN_DEVICE: "pass --devices with the device records CSV that holds this device (written by `pos-flash provision add-device`)",
    FlashCode.TIMEOUT: "the device stopped answering; check the cable, then run the same command again",
    FlashCode.HEALTH_FAILED: "the new image failed its self-test and the device went back to the previous image; read the log (`pos-flash info`)",
    FlashCode.BAD_KEY: "use a key file written by `pos-flash keygen`",
    FlashCode.EXISTS: "refusing to overwrite; choose another path or move the old file away first",
    FlashCode.BAD_INPUT: "fix the input named in the message and run the command again",
}


def advise(exc: FlashError) -> FlashError:
    """The same error with what to do appended to its message (once, however often it is called)."""
    hint = HINTS.get(exc.code, "")
    if not hint or exc.message.endswith(hint):
        return exc
    advised = FlashError(exc.code, exc.detail, offset=exc.offset, message=f"{exc.message}; {hint}")
    advised.__cause__ = exc.__cause__
    return advised
