"""Fault injection for the virtual device: what a bench technician does to a real POS, scripted.

Faults are JSON objects (the control API's `POST /v1/faults` body, `pos-sim fault ...`), parsed by
`parse_fault` into frozen values; `VirtualDevice.inject(fault)` applies them:

    {"fault": "unplug", "for_s": 2}                      pull the cable (and put it back after 2 s)
    {"fault": "replug"}
    {"fault": "drop" | "corrupt" | "duplicate", "direction": "to_bridge" | "to_device" | "both",
     "probability": 0.01}  or  {"next_bytes": 40}        garble the byte stream (seed: reproducible)
    {"fault": "delay", "direction": ..., "ms": 50}       every chunk waits this long (optionally next_bytes)
    {"fault": "clear"}                                   remove every byte fault
    {"fault": "power_cut"}                               now
    {"fault": "power_cut", "at": "paying", "phase": "after"}      when the journal commits a state
    {"fault": "power_cut", "at": "collect:awaiting_scan->paying"}  ... or exactly this commit label
    {"fault": "power_cut", "after_bytes": 300, "direction": "both"}   after N more bytes on the link
        (any power_cut may add "off_for_s": 1.5 to switch the device on again by itself)
    {"fault": "power_on"}
    {"fault": "clock_skew", "seconds": 3600}             the device's clock runs this far ahead (- behind)

The byte filter sits between the wire and the link endpoint (`FaultyWire`), per direction, so the
link's CRC, retransmission and duplicate suppression are exercised exactly as by a bad cable.
Journal commit labels are terminal.journal's (`CommitPoint.label`, e.g. "refund:awaiting_supervisor->
refunding"); a bare state name matches any commit that enters that state.
"""

from __future__ import annotations

import enum
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from protocol.strictjson import ReportJson
from terminal.journal import CommitPoint
from terminal.link.wire import Wire
from terminal.machine import State

from firmware_sim.simerrors import SimCode, SimError

# The largest delay a fault may add per chunk: enough to exceed every link timer, bounded so a typo
# cannot freeze the device for an hour.
MAX_DELAY_MS = 60_000
MAX_FOR_S = 3600.0
MAX_SKEW_S = 10 * 365 * 24 * 3600
_LABEL = re.compile(r"[a-z_]+:[a-z_]+(->[a-z_]+)?", re.ASCII)


class Direction(str, enum.Enum):
    TO_BRIDGE = "to_bridge"  # what the device writes
    TO_DEVICE = "to_device"  # what the device reads
    BOTH = "both"

    def covers(self, way: "Direction") -> bool:
        return self is Direction.BOTH or self is way


class ByteFaultKind(str, enum.Enum):
    DROP = "drop"
    CORRUPT = "corrupt"
    DUPLICATE = "duplicate"
    DELAY = "delay"


@dataclass(frozen=True, slots=True)
class ByteFault:
    kind: ByteFaultKind
    direction: Direction = Direction.BOTH
    probability: float | None = None  # per byte (per chunk for delay); None with next_bytes
    next_bytes: int | None = None  # affect exactly the next N bytes, then stop
    delay_ms: int = 0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class Unplug:
    for_s: float | None = None


@dataclass(frozen=True, slots=True)
class Replug:
    pass


@dataclass(frozen=True, slots=True)
class ClearFaults:
    pass


@dataclass(frozen=True, slots=True)
class PowerCutFault:
    at: str | None = None  # a commit label or a state name; None with after_bytes or for "now"
    phase: str = "after"  # "before" (the commit is rolled back) or "after" (durable, not acted on)
    after_bytes: int | None = None
    direction: Direction = Direction.BOTH
    off_for_s: float | None = None  # switch on again by itself after this long

    @property
    def immediate(self) -> bool:
        return self.at is None and self.after_bytes is None

    def matches(self, point: CommitPoint) -> bool:
        if self.at is None or point.phase != self.phase:
            return False
        if ":" in self.at:
            return point.label == self.at
        return point.label.endswith("->" + self.at)


@dataclass(frozen=True, slots=True)
class PowerOn:
    pass


@dataclass(frozen=True, slots=True)
class ClockSkew:
    seconds: float


Fault = ByteFault | Unplug | Replug | ClearFaults | PowerCutFault | PowerOn | ClockSkew

_FIELDS: dict[str, set[str]] = {
    "unplug": {"for_s"}, "replug": set(), "clear": set(), "power_on": set(), "clock_skew": {"seconds"},
    "power_cut": {"at", "phase", "after_bytes", "direction", "off_for_s"},
    **{k.value: {"direction", "probability", "next_bytes", "seed"} | ({"ms"} if k is ByteFaultKind.DELAY else set())
       for k in ByteFaultKind},
}


def _bad(message: str) -> SimError:
    return SimError(SimCode.BAD_FAULT, message)


def _number(obj: Mapping[str, object], name: str, lo: float, hi: float, *, integer: bool = False) -> float | None:
    if name not in obj:
        return None
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise _bad(f"{name} must be a {'whole ' if integer else ''}number, got {value!r}")
    if not (lo <= value <= hi) or (isinstance(value, float) and not math.isfinite(value)):
        raise _bad(f"{name} must be from {lo:g} to {hi:g}, got {value!r}")
    return value


def _direction(obj: Mapping[str, object]) -> Direction:
    raw = obj.get("direction", "both")
    try:
        return Direction(raw)
    except ValueError:
        raise _bad(f"direction must be one of {', '.join(d.value for d in Direction)}, got {raw!r}") from None


def parse_fault(obj: object) -> Fault:
    """One fault from its JSON object; SimError(bad_fault) says exactly what is wrong."""
    if not isinstance(obj, dict):
        raise _bad("a fault is a JSON object such as {\"fault\": \"unplug\"}")
    name = obj.get("fault")
    if name not in _FIELDS:
        raise _bad(f"unknown fault {name!r}; known: {', '.join(sorted(_FIELDS))}")
    unknown = sorted(set(obj) - _FIELDS[name] - {"fault"})
    if unknown:
        raise _bad(f"{name} takes no field {unknown[0]!r} (it takes: {', '.join(sorted(_FIELDS[name])) or 'nothing'})")
    if name == "unplug":
        return Unplug(_number(obj, "for_s", 0.0, MAX_FOR_S))
    if name == "replug":
        return Replug()
    if name == "clear":
        return ClearFaults()
    if name == "power_on":
        return PowerOn()
    if name == "clock_skew":
        seconds = _number(obj, "seconds", -MAX_SKEW_S, MAX_SKEW_S)
        if seconds is None:
            raise _bad("clock_skew needs seconds (the device clock runs this far ahead; negative: behind)")
        return ClockSkew(float(seconds))
    if name == "power_cut":
        return _power_cut(obj)
    kind = ByteFaultKind(name)
    probability = _number(obj, "probability", 0.0, 1.0)
    next_bytes = _number(obj, "next_bytes", 1, 10**9, integer=True)
    seed = _number(obj, "seed", 0, 2**63, integer=True)
    delay = 0
    if kind is ByteFaultKind.DELAY:
        ms = _number(obj, "ms", 1, MAX_DELAY_MS, integer=True)
        if ms is None:
            raise _bad("delay needs ms (milliseconds each chunk waits)")
        delay = int(ms)
        if probability is None and next_bytes is None:
            probability = 1.0
    if (probability is None) == (next_bytes is None):
        raise _bad(f"{name} needs exactly one of probability (0..1, per byte) or next_bytes (N)")
    return ByteFault(kind, _direction(obj), probability, None if next_bytes is None else int(next_bytes), delay,
                     None if seed is None else int(seed))


def _power_cut(obj: Mapping[str, object]) -> PowerCutFault:
    at = obj.get("at")
    after_bytes = _number(obj, "after_bytes", 0, 10**9, integer=True)
    if at is not None and after_bytes is not None:
        raise _bad("power_cut takes either at (a journal state) or after_bytes (link bytes), not both")
    if at is not None:
        if not isinstance(at, str) or not at:
            raise _bad("at must be a state name such as \"paying\" or a commit label such as \"collect:awaiting_scan->paying\"")
        if ":" in at:
            if not _LABEL.fullmatch(at):
                raise _bad(f"at {at!r} is not a journal commit label (kind:before->after, e.g. collect:awaiting_scan->paying)")
        elif at not in {s.value for s in State}:
            raise _bad(f"at {at!r} is not a state; states: {', '.join(s.value for s in State)}")
    phase = obj.get("phase", "after")
    if phase not in ("before", "after"):
        raise _bad(f"phase must be \"before\" (the commit is lost) or \"after\" (durable, not acted on), got {phase!r}")
    if at is None and "phase" in obj:
        raise _bad("phase applies only with at")
    if after_bytes is None and "direction" in obj:
        raise _bad("direction applies only with after_bytes")
    return PowerCutFault(at, str(phase), None if after_bytes is None else int(after_bytes), _direction(obj),
                    _number(obj, "off_for_s", 0.0, MAX_FOR_S))


def describe_fault(fault: Fault) -> dict[str, object]:
    """The JSON form of a fault (what GET /v1/faults lists)."""
    if isinstance(fault, ByteFault):
        out: dict[str, object] = {"fault": fault.kind.value, "direction": fault.direction.value}
        for key, value in (("probability", fault.probability), ("next_bytes", fault.next_bytes),
                           ("ms", fault.delay_ms or None), ("seed", fault.seed)):
            if value is not None:
                out[key] = value
        return out
    if isinstance(fault, PowerCutFault):
        out = {"fault": "power_cut"}
        if fault.at is not None:
            out.update(at=fault.at, phase=fault.phase)
        if fault.after_bytes is not None:
            out.update(after_bytes=fault.after_bytes, direction=fault.direction.value)
        if fault.off_for_s is not None:
            out["off_for_s"] = fault.off_for_s
        return out
    name = {Unplug: "unplug", Replug: "replug", ClearFaults: "clear", PowerOn: "power_on", ClockSkew: "clock_skew"}[type(fault)]
    out = {"fault": name}
    if isinstance(fault, Unplug) and fault.for_s is not None:
        out["for_s"] = fault.for_s
    if isinstance(fault, ClockSkew):
        out["seconds"] = fault.seconds
    return out


# ----------------------------------------------------------------------------------- the byte filter


@dataclass
class _Active:
    fault: ByteFault
    rng: random.Random
    left: int | None  # bytes still to affect (next_bytes); None: probabilistic, until cleared


@dataclass
class FilterStats:
    passed: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    delayed_chunks: int = 0


class ByteFilter:
    """The faults of one direction. `apply(data)` -> (bytes to pass on, seconds to hold them)."""

    def __init__(self) -> None:
        self._active: list[_Active] = []
        self.stats = FilterStats()

    def add(self, fault: ByteFault) -> None:
        rng = random.Random(fault.seed) if fault.seed is not None else random.Random()
        self._active.append(_Active(fault, rng, fault.next_bytes))

    def clear(self) -> None:
        self._active.clear()

    @property
    def faults(self) -> list[ByteFault]:
        return [a.fault for a in self._active]

    def apply(self, data: bytes) -> tuple[bytes, float]:
        delay = 0.0
        for active in list(self._active):
            if not data:
                break
            if active.fault.kind is ByteFaultKind.DELAY:
                hit = active.left is not None or active.rng.random() < (active.fault.probability or 0.0)
                if hit:
                    delay += active.fault.delay_ms / 1000
                    self.stats.delayed_chunks += 1
                if active.left is not None:
                    active.left -= len(data)
            else:
                data = self._garble(active, data)
            if active.left is not None and active.left <= 0:
                self._active.remove(active)
        self.stats.passed += len(data)
        return data, delay

    def _garble(self, active: _Active, data: bytes) -> bytes:
        kind, out = active.fault.kind, bytearray()
        for byte in data:
            if active.left is not None:
                hit = active.left > 0
                if hit:
                    active.left -= 1
            else:
                hit = active.rng.random() < (active.fault.probability or 0.0)
            if not hit:
                out.append(byte)
            elif kind is ByteFaultKind.DROP:
                self.stats.dropped += 1
            elif kind is ByteFaultKind.CORRUPT:
                out.append(byte ^ active.rng.randrange(1, 256))  # never XOR 0: the byte really changes
                self.stats.corrupted += 1
            else:
                out += bytes((byte, byte))
                self.stats.duplicated += 1
        return bytes(out)


class ByteBudget:
    """'Power cut after N more bytes' in one direction or both: `take(n)` says how many get through."""

    def __init__(self, fault: PowerCutFault) -> None:
        assert fault.after_bytes is not None
        self.fault = fault
        self.left = fault.after_bytes

    def take(self, way: Direction, n: int) -> int:
        if not self.fault.direction.covers(way):
            return n
        allowed = min(n, self.left)
        self.left -= allowed
        return allowed

    @property
    def spent(self) -> bool:
        return self.left <= 0


# ----------------------------------------------------------------------------------- the faulty wire


class FaultyWire:
    """A terminal.link.wire Wire wrapped with the byte filters, a byte budget and a power switch.

    `silence()` cuts the device off the wire at once (no lock taken: safe from any thread, inside a
    journal commit hook too); `close()` only detaches the wire (the device disappears from the bus)
    unless `close(final=True)`, so a power cycle can run a new endpoint on the same wire.
    """

    def __init__(self, inner: Wire, *, on_budget_spent: Callable[[PowerCutFault], None] | None = None) -> None:
        self.inner = inner
        self.filters = {Direction.TO_BRIDGE: ByteFilter(), Direction.TO_DEVICE: ByteFilter()}
        self.on_budget_spent = on_budget_spent
        self._budget: ByteBudget | None = None
        self._silent = False
        self._lock = threading.Lock()  # guards the filters and the budget, never held across I/O

    @property
    def bridge_url(self) -> str:
        return self.inner.bridge_url

    # -- faults --------------------------------------------------------------------------------
    def add(self, fault: ByteFault) -> None:
        with self._lock:
            for way, filt in self.filters.items():
                if fault.direction.covers(way):
                    filt.add(fault)

    def clear(self) -> None:
        with self._lock:
            for filt in self.filters.values():
                filt.clear()

    def arm_budget(self, fault: PowerCutFault) -> None:
        with self._lock:
            self._budget = ByteBudget(fault)

    def disarm_budget(self) -> None:
        with self._lock:
            self._budget = None

    def silence(self) -> None:
        self._silent = True

    def unsilence(self) -> None:
        self._silent = False

    @property
    def silent(self) -> bool:
        return self._silent

    def describe(self) -> ReportJson:
        with self._lock:
            out: dict[str, object] = {
                way.value: {"faults": [describe_fault(f) for f in filt.faults], "stats": vars(filt.stats).copy()}
                for way, filt in self.filters.items()
            }
            if self._budget is not None:
                out["power_cut_after_bytes"] = {"left": self._budget.left, "direction": self._budget.fault.direction.value}
            return out

    # -- the Wire interface ----------------------------------------------------------------------
    def _pass(self, way: Direction, data: bytes) -> tuple[bytes, float]:
        spent: PowerCutFault | None = None
        with self._lock:
            if self._budget is not None:
                data = data[: self._budget.take(way, len(data))]
                if self._budget.spent:
                    spent, self._budget = self._budget.fault, None
                    self._silent = True
            data, delay = self.filters[way].apply(data)
        if spent is not None and self.on_budget_spent is not None:
            self.on_budget_spent(spent)
        return data, delay

    def read(self, max_bytes: int, timeout: float) -> bytes:
        if self._silent:
            time.sleep(timeout)
            return b""
        data = self.inner.read(max_bytes, timeout)
        if not data:
            return data
        data, delay = self._pass(Direction.TO_DEVICE, data)
        if delay:
            time.sleep(delay)
        return data

    def write(self, data: bytes) -> None:
        if self._silent or not data:
            return
        data, delay = self._pass(Direction.TO_BRIDGE, data)
        if delay:
            time.sleep(delay)
        if data:
            self.inner.write(data)

    def unplug(self) -> None:
        self.inner.unplug()

    def replug(self) -> None:
        self.inner.replug()

    def close(self, final: bool = False) -> None:
        if final:
            self.inner.close()
        else:
            self.inner.unplug()
