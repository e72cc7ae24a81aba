"""`aoa` at the device end: the POS app's side of an Android Open Accessory link, as a `Wire`.

The bridge switches the POS into accessory mode (bridge.transport.aoa); Android then hands the app an
accessory, which it opens as one file descriptor: two blocking streams, no timeouts, no poll. This
module is everything around those streams, and runs anywhere:

- an `opener` (a callable) gives an `Accessory` (its `input` and `output` streams and `close`) or
  None while there is none (not attached yet, no permission yet, or another opener holds it). On the
  POS it is terminal.link.android_accessory.open_android_accessory (pyjnius, Android only); the
  simulator and the tests pass their own (firmware_sim.android_usb, real pipes and sockets);
- a reader thread per opened accessory blocks in `input.read(READ_SIZE)` and queues what arrives,
  so `read(max_bytes, timeout)` honours its timeout as the endpoint needs;
- when the accessory goes away (the cable is pulled, the host closed it: the read fails or hits end
  of stream) the session ends with `WireReset`, the reader closes the streams, and the opener is
  tried again every REOPEN_INTERVAL_S; a newly opened accessory starts a new session (`WireReset`), so the link
  handshakes again. `unplug()`/`replug()` do the same on purpose.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Protocol

from terminal.link.wire import WireReset

log = logging.getLogger("terminal.link.accessory")

# Android's accessory driver hands over whole USB requests of 16 KiB: a shorter read can fail or lose
# the rest of the request, so the reader always asks for this much and keeps the surplus.
READ_SIZE = 16384
REOPEN_INTERVAL_S = 0.5  # how often a missing accessory is looked for (UsbManager.getAccessoryList)


class AccessoryInput(Protocol):
    def read(self, size: int, /) -> bytes | None: ...


class AccessoryOutput(Protocol):
    def write(self, data: bytes | memoryview, /) -> int | None: ...
    def close(self) -> None: ...


class Accessory(Protocol):
    """An opened accessory: what UsbManager.openAccessory's file descriptor gives."""

    @property
    def input(self) -> AccessoryInput: ...
    @property
    def output(self) -> AccessoryOutput: ...
    def close(self) -> None: ...


Opener = Callable[[], "Accessory | None"]


class AccessoryWire:
    def __init__(self, opener: Opener, *, reopen_interval_s: float = REOPEN_INTERVAL_S,
                 read_size: int = READ_SIZE, clock: Callable[[], float] = time.monotonic) -> None:
        self.opener = opener
        self.reopen_interval_s = reopen_interval_s
        self.read_size = read_size
        self.clock = clock
        self._lock = threading.Lock()
        self._accessory: Accessory | None = None
        self._session = 0  # bumped at every open and drop: chunks of an older session are stale
        self._chunks: queue.Queue[tuple[int, bytes | str]] = queue.Queue()  # bytes, or why it ended
        self._pending = b""
        self._plugged = True
        self._next_open = 0.0
        self._idle = threading.Event()  # never set: a wait that honours the timeout
        self.last_error: str | None = None
        self.sessions = 0  # accessories opened so far

    @property
    def bridge_url(self) -> str:
        return "aoa"  # the device's own name for its end; the bridge names the POS (aoa://VID:PID)

    @property
    def is_open(self) -> bool:
        return self._accessory is not None

    # ------------------------------------------------------------ sessions

    def _try_open(self) -> bool:
        if not self._plugged or self.clock() < self._next_open:
            return False
        try:
            accessory = self.opener()
        except OSError as exc:  # the platform refused (permission, busy): say it once, retry later
            accessory = None
            if str(exc) != self.last_error:
                log.warning("cannot open the USB accessory: %s", exc)
            self.last_error = str(exc)
        if accessory is None:
            self._next_open = self.clock() + self.reopen_interval_s
            return False
        with self._lock:
            self._session += 1
            self._accessory = accessory
            self._pending = b""
            session = self._session
        self.sessions += 1
        self.last_error = None
        threading.Thread(target=self._reader, args=(session, accessory), name=f"accessory-reader-{session}",
                         daemon=True).start()
        return True

    def _reader(self, session: int, accessory: Accessory) -> None:
        # The reader alone closes the accessory (both streams), once its read has returned: a stream
        # closed by another thread while this one is about to read could see its descriptor number
        # reused by the next accessory, and this thread would then steal the next session's bytes.
        try:
            while True:
                try:
                    data = accessory.input.read(self.read_size)
                except (OSError, ValueError) as exc:  # detached (ENODEV, EIO) or closed under us
                    self._chunks.put((session, f"read failed ({exc})"))
                    return
                if not data:
                    self._chunks.put((session, "end of stream"))
                    return
                if session != self._session:
                    return  # dropped meanwhile: nothing more is read for that session
                self._chunks.put((session, bytes(data)))
        finally:
            try:
                accessory.close()
            except (OSError, ValueError):
                pass

    def _drop(self, why: str) -> None:
        """End the session: nothing more is written, what its reader still reads is discarded; the
        reader closes the accessory when its read returns (the cable pulled: at once)."""
        with self._lock:
            accessory, self._accessory = self._accessory, None
            self._session += 1
            self._pending = b""
            self.last_error = why
        if accessory is not None:
            try:
                accessory.output.close()
            except (OSError, ValueError):
                pass

    # ------------------------------------------------------------ Wire

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
            return data
        if self._accessory is None:
            if self._try_open():
                raise WireReset("the USB accessory was opened")
            self._idle.wait(timeout)
            return b""
        try:
            session, item = self._chunks.get(timeout=timeout)
        except queue.Empty:
            return b""
        if session != self._session:
            return b""  # from an accessory already dropped
        if isinstance(item, str):
            self._drop(item)
            raise WireReset(f"the USB accessory went away: {item}")
        data, self._pending = item[:max_bytes], item[max_bytes:]
        return data

    def write(self, data: bytes) -> None:
        accessory = self._accessory
        if accessory is None:
            return  # nobody there: as a cable with no host
        view = memoryview(data)
        try:
            while view:
                written = accessory.output.write(view)
                view = view[len(view) if written is None else written:]
        except (OSError, ValueError) as exc:
            if self._accessory is accessory:
                self._drop(f"write failed ({exc})")

    def unplug(self) -> None:
        self._plugged = False
        self._drop("unplugged")

    def replug(self) -> None:
        self._plugged = True
        self._next_open = 0.0

    def close(self) -> None:
        self.unplug()
