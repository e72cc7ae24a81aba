"""The hardware scanner as a keyboard wedge: tell a scanner's burst of keystrokes from a person.

A USB/serial code scanner in keyboard mode "types" the code within a few milliseconds per key and
ends it with Enter. We listen to the whole window (not a text field, so nothing can be typed into a
payment by hand) and accept a code only when every gap between keys was short. Slow keys (someone
leaning on the keyboard, a cashier typing) reset the buffer and are never sent as a payment code.

Pure: `feed(char, now)` and `enter(now)` take the time as an argument; `enter` returns the code or
None. The limits are named constants with a config override (some Bluetooth scanners are slower).
"""

from __future__ import annotations

from dataclasses import dataclass

# Typical wedge scanners send a key every 1-10 ms; a fast human typist needs 60 ms or more.
MAX_KEY_GAP_S = 0.05
# The shortest thing a scanner sends that we care about (payment codes are 16-24 digits).
MIN_LENGTH = 6
# Anything longer is not a payment code; stop collecting (routing refuses long input anyway).
MAX_LENGTH = 128


@dataclass(frozen=True, slots=True)
class WedgeLimits:
    max_key_gap_s: float = MAX_KEY_GAP_S
    min_length: int = MIN_LENGTH
    max_length: int = MAX_LENGTH


class WedgeDecoder:
    def __init__(self, limits: WedgeLimits = WedgeLimits()) -> None:
        self.limits = limits
        self._chars: list[str] = []
        self._last: float | None = None

    def _gap_ok(self, now: float) -> bool:
        return self._last is not None and now - self._last <= self.limits.max_key_gap_s

    def feed(self, char: str, now: float) -> None:
        """One printable character arrived at `now` (seconds, monotonic)."""
        if len(char) != 1 or not char.isprintable():
            self.reset()
            return
        if self._chars and not self._gap_ok(now):
            self._chars.clear()  # too slow to be a scanner: start over from this key
        self._last = now
        if len(self._chars) < self.limits.max_length:
            self._chars.append(char)

    def enter(self, now: float) -> str | None:
        """Enter arrived: the code when the burst looked like a scanner, else None."""
        chars, fast = self._chars, self._gap_ok(now)
        self.reset()
        if not fast or len(chars) < self.limits.min_length or len(chars) >= self.limits.max_length:
            return None
        return "".join(chars)

    def reset(self) -> None:
        self._chars = []
        self._last = None

    @property
    def pending(self) -> int:
        return len(self._chars)
