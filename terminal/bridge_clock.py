"""The bridge's clock as this POS last heard it, carried forward on the monotonic clock.

Results are stamped with the bridge's time, because the bridge and HIS check a result's `ts`
against their clocks (not more than 300 s in the future, not more than 300 s before its
instruction). The POS hears the bridge's clock at every link-up (HELLO_ACK) and with every
instruction (`InstructionMsg.clock`), and carries it forward with `time.monotonic`, which a step of
the wall clock does not move (issue 14, finding 1). So a POS clock set 400 s ahead, or an hour back,
in the middle of a payment stamps its result exactly as before; and an offset measured before a
clock was put right is replaced by the next instruction, not kept until the next link-up.

The monotonic clock does not survive a reboot: until a bridge is heard again (results finished
during recovery after a power cut), `stamp` falls back to the instruction's own `ts` plus the time
this POS has worked on it by its own clock. Every stamp is at least the instruction's `ts`, which
HIS produced and the bridge accepted, so it is never "before the instruction".
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class BridgeClock:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._anchor: tuple[float, float] | None = None  # (bridge unix seconds, our monotonic then)

    def heard(self, bridge_unix: float) -> None:
        """The bridge said its clock reads `bridge_unix` now."""
        with self._lock:
            self._anchor = (float(bridge_unix), self._monotonic())

    def now(self) -> float | None:
        """The bridge's clock now, as far as this POS can tell (None: not heard since boot)."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return None
        return anchor[0] + (self._monotonic() - anchor[1])

    def offset(self, device_now: float) -> float | None:
        """This device's clock minus the bridge's (None: unknown)."""
        bridge = self.now()
        return None if bridge is None else device_now - bridge

    def stamp(self, device_now: float, instruction_ts: int, received_at: float) -> int:
        """The `ts` of a result sealed at device time `device_now` for an instruction of `instruction_ts`
        that this device journaled at its own `received_at`."""
        bridge = self.now()
        if bridge is None:
            bridge = instruction_ts + max(0.0, device_now - received_at)
        return int(max(bridge, instruction_ts))
