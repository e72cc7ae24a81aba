"""The bridge's one configuration file (TOML), validated completely before anything starts.

Every setting has a default (docs/bridge.md lists them all), so an empty file is a valid loopback
bridge looking for a USB-serial POS. A bad setting stops the start with a message naming it:

    config.toml: [http] port = 99999 is not a port (1-65535)

Unknown sections and keys are errors too (a typo must not silently fall back to a default).
Relative paths are relative to the directory of the configuration file.
"""

from __future__ import annotations

import builtins
import difflib
import ipaddress
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from protocol.amount import DEFAULT_LIMIT_FEN, MAX_FEN, format_yuan, parse_yuan
from protocol.errors import CodedError, ProtocolError
from protocol.freshness import DEFAULT_ANSWER_TTL_S, DEFAULT_SKEW_S
from protocol.limits import LimitsError, parse_limits
from protocol.link.session import LinkTimers
from protocol.signatures import NO_HIS_SIGNATURE, HisSignaturePolicy
from protocol.signing import decode_public_key

from bridge.transport import TransportError, make_transport

LOOPBACK_NAMES = {"localhost"}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# An identical re-POST is answered from the journal for a week by default (the interface promises >= 24 h).
DEFAULT_ANSWER_TTL = 7 * 24 * 3600
SYNCHRONOUS = ("FULL", "NORMAL")


class BridgeConfigError(CodedError, ValueError):
    """A setting is wrong; the message names the file, section, key and what is expected."""

    code = "bridge_config"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    allow_clients: tuple[str, ...] = ()  # IP addresses or networks; required for a non-loopback host
    request_timeout_s: float = 10.0  # the whole request (line, headers, body) must arrive within this
    idle_timeout_s: float = 30.0  # a kept-alive connection with no new request is closed after this
    max_connections: int = 200  # open at once; past this the longest-idle connection is closed first
    first_byte_timeout_s: float = 2.0  # a new connection that sends nothing for this long is closed (<= 2 s)


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    key_file: Path
    identity_file: Path = Path("bridge_identity.key")  # the bridge's link identity key (POS pins it)
    clock_skew_s: int = DEFAULT_SKEW_S
    answer_ttl_s: int = DEFAULT_ANSWER_TTL
    # The hospital's per-transaction limit (its setting in the gateway, provisioned by limits_file).
    amount_limit_fen: int = DEFAULT_LIMIT_FEN
    # his-interface 1.1 C: how long an instruction without its own expires_at waits for the POS.
    instruction_ttl_s: int = 600
    # his-interface 1.1 B: HIS's Ed25519 public keys and the require_his_signature switch.
    his_signature: HisSignaturePolicy = NO_HIS_SIGNATURE


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    devices: Path
    terminals: Path


@dataclass(frozen=True, slots=True)
class JournalConfig:
    path: Path
    synchronous: str = "FULL"
    busy_timeout_s: int = 10
    retention_days: int = 400
    archive_dir: Path | None = None  # None: "archive" beside the journal


@dataclass(frozen=True, slots=True)
class LinkConfig:
    ports: tuple[str, ...] = ("auto",)
    baud: int = 115200
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 10.0
    timers: LinkTimers = LinkTimers()
    # An unfinished instruction whose state has not moved for this long raises an alarm (health, log).
    stall_alarm_s: float = 600.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"
    file: Path | None = None  # None: standard error


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    http: HttpConfig
    security: SecurityConfig
    registry: RegistryConfig
    journal: JournalConfig
    link: LinkConfig
    log: LogConfig


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return str(value)


class _Section:
    """Typed reads of one table; every failure names source, section and key."""

    def __init__(self, source: str, name: str, table: object, known: tuple[str, ...]) -> None:
        self.source, self.name = source, name
        if not isinstance(table, dict):
            raise BridgeConfigError(f"{source}: [{name}] must be a table")
        self.table = table
        for key in table:
            if key not in known:
                near = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {near[0]}?" if near else f"; known keys: {', '.join(known)}"
                raise BridgeConfigError(f"{source}: [{name}] {key} is not a setting{hint}")

    def fail(self, key: str, why: str) -> BridgeConfigError:
        return BridgeConfigError(f"{self.source}: [{self.name}] {key} = {_shown(self.table[key])} {why}")

    def int(self, key: str, default: int, lo: int, hi: int, what: str) -> int:
        if key not in self.table:
            return default
        value = self.table[key]
        if type(value) is not int or not lo <= value <= hi:
            raise self.fail(key, f"is not {what} ({lo}-{hi})")
        return value

    def number(self, key: str, default: float, lo: float, hi: float, what: str = "a number of seconds") -> float:
        if key not in self.table:
            return default
        value = self.table[key]
        if type(value) not in (int, float) or not math.isfinite(value) or not lo <= value <= hi:
            raise self.fail(key, f"is not {what} ({lo:g}-{hi:g})")
        return float(value)

    def str(self, key: str, default: str, check: Callable[[str], str | None] | None = None) -> str:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.fail(key, "is not a string")
        if check is not None and (why := check(value)) is not None:
            raise self.fail(key, why)
        return value

    def path(self, key: builtins.str, default: builtins.str, base: Path) -> Path:
        text = self.str(key, default, lambda v: None if v.strip() else "is empty; name a file")
        return (base / text).resolve() if not Path(text).is_absolute() else Path(text)

    def str_list(self, key: builtins.str, default: tuple[builtins.str, ...]) -> tuple[builtins.str, ...]:
        if key not in self.table:
            return default
        value = self.table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "is not a list of strings")
        return tuple(value)


SECTIONS = {
    "http": ("host", "port", "allow_clients", "request_timeout_s", "idle_timeout_s", "max_connections",
             "first_byte_timeout_s"),
    "security": ("key_file", "identity_file", "clock_skew_s", "answer_ttl_s", "amount_limit", "limits_file", "instruction_ttl_s",
                 "his_public_keys", "require_his_signature",
                 "require_his_signature_terminals"),
    "registry": ("devices", "terminals"),
    "journal": ("path", "synchronous", "busy_timeout_s", "retention_days", "archive_dir"),
    "link": ("ports", "baud", "reconnect_min_s", "reconnect_max_s", "stall_alarm_s", "timers"),
    "link.timers": ("rto_base_s", "max_tries", "window", "keepalive_s", "dead_after_s", "hello_retry_s",
                    "marks_refresh_s"),
    "log": ("level", "file"),
}


def parse_config(data: dict[str, object], *, source: str = "config.toml", base_dir: Path = Path(".")) -> Config:
    for name in data:
        if name not in SECTIONS or name == "link.timers":
            near = difflib.get_close_matches(name, [s for s in SECTIONS if "." not in s], n=1)
            raise BridgeConfigError(f"{source}: [{name}] is not a section" + (f"; did you mean [{near[0]}]?" if near else ""))

    def section(name: str, table: object = None) -> _Section:
        return _Section(source, name, data.get(name, {}) if table is None else table, SECTIONS[name])

    return Config(source, _http(section("http")), _security(section("security"), base_dir),
                  RegistryConfig(section("registry").path("devices", "devices.csv", base_dir),
                                 section("registry").path("terminals", "terminals.csv", base_dir)),
                  _journal(section("journal"), base_dir), _link(section, data), _log(section("log"), base_dir))


def _http(s: _Section) -> HttpConfig:
    host = s.str("host", "127.0.0.1", lambda v: None if v.strip() == v and v else "is not a host address")
    allow = s.str_list("allow_clients", ())
    for entry in allow:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise s.fail("allow_clients", f"holds {_shown(entry)}, which is not an IP address or network") from None
    if not is_loopback(host):
        if host in ("0.0.0.0", "::", ""):
            raise s.fail("host", "listens on every interface; name the one address HIS reaches (and set allow_clients)")
        if not allow:
            raise s.fail("host", "is not a loopback address: also list the HIS machines in [http] allow_clients")
    return HttpConfig(
        host=host,
        # 0 (any free port, announced in the bridge_started log line) is for tests and is not advertised.
        port=0 if s.table.get("port") == 0 and type(s.table.get("port")) is int else s.int("port", 8765, 1, 65535, "a port"),
        allow_clients=allow,
        request_timeout_s=s.number("request_timeout_s", 10.0, 0.5, 300.0),
        idle_timeout_s=s.number("idle_timeout_s", 30.0, 0.5, 3600.0),
        max_connections=s.int("max_connections", 200, 4, 10000, "a number of connections"),
        # At most 2 s (HIS interface 1.1 part D): idle sockets must not hold slots HIS needs.
        first_byte_timeout_s=s.number("first_byte_timeout_s", 2.0, 0.1, 2.0),
    )


def _amount_limit(value: str) -> str | None:
    try:
        fen = parse_yuan(value, allow_zero=False)
    except ProtocolError as exc:
        return f"is not an amount in yuan such as \"50000.00\" ({exc.message})"
    return None if fen <= MAX_FEN else "is too large"


def _amount_limit_fen(s: _Section, base: Path) -> int:
    """The per-transaction limit: the hospital's, from the hospital-limits-v1 file the gateway exports
    (limits_file), or written here by hand (amount_limit, default 50000.00); not both. An empty
    limits_file is no file (the example config.toml starts so)."""
    if s.str("limits_file", "") == "":
        return parse_yuan(s.str("amount_limit", format_yuan(DEFAULT_LIMIT_FEN), _amount_limit))
    if "amount_limit" in s.table:
        raise s.fail("amount_limit", "is set as well as limits_file: the limit has one source (the hospital's, in "
                     "limits_file); remove amount_limit")
    path = s.path("limits_file", "limits.json", base)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise s.fail("limits_file", f"cannot be read ({exc.strerror or exc}); write it with: gateway-admin hospital limits "
                     "HOSPITAL_ID --out FILE") from None
    try:
        return parse_limits(text, source=path.name).per_transaction_fen
    except LimitsError as exc:
        raise s.fail("limits_file", f"is not a hospital-limits-v1 file: {exc}") from None


def _security(s: _Section, base: Path) -> SecurityConfig:
    return SecurityConfig(
        key_file=s.path("key_file", "keys.json", base),
        identity_file=s.path("identity_file", "bridge_identity.key", base),
        clock_skew_s=s.int("clock_skew_s", DEFAULT_SKEW_S, 1, 3600, "a number of seconds"),
        answer_ttl_s=s.int("answer_ttl_s", DEFAULT_ANSWER_TTL, DEFAULT_ANSWER_TTL_S, 10 * 365 * 86400,
                           "a number of seconds, at least 24 h as the HIS interface promises"),
        amount_limit_fen=_amount_limit_fen(s, base),
        instruction_ttl_s=s.int("instruction_ttl_s", 600, 30, 86_400, "a number of seconds from 30 to 86400"),
        his_signature=_his_signature(s),
    )


def _his_signature(s: _Section) -> HisSignaturePolicy:
    keys = []
    for text in s.str_list("his_public_keys", ()):
        try:
            keys.append(decode_public_key(text))
        except ValueError as exc:
            raise s.fail("his_public_keys", f"holds {_shown(text)}: {exc}") from None
    required = s.table.get("require_his_signature", False)
    if not isinstance(required, bool):
        raise s.fail("require_his_signature", "is not true or false")
    terminals = s.str_list("require_his_signature_terminals", ())
    if (required or terminals) and not keys:
        key = "require_his_signature" if required else "require_his_signature_terminals"
        raise s.fail(key, "needs HIS's public key in his_public_keys (base64 of the 32-byte Ed25519 key)")
    return HisSignaturePolicy(tuple(keys), required, frozenset(terminals))


def _journal(s: _Section, base: Path) -> JournalConfig:
    sync = s.str("synchronous", "FULL", lambda v: None if v in SYNCHRONOUS else f"must be one of {', '.join(SYNCHRONOUS)}")
    path = s.path("path", "journal.sqlite3", base)
    return JournalConfig(path=path, synchronous=sync,
                         busy_timeout_s=s.int("busy_timeout_s", 10, 1, 600, "a number of seconds"),
                         retention_days=s.int("retention_days", 400, 30, 36500, "a number of days"),
                         archive_dir=s.path("archive_dir", str(path.parent / "archive"), base))


def _link(section: Callable[..., _Section], data: dict[str, object]) -> LinkConfig:
    s = section("link")
    ports = s.str_list("ports", ("auto",))
    if not ports:
        raise s.fail("ports", "is empty; name at least one device port, as in [\"serial:COM3\"]")
    if len(set(ports)) != len(ports):
        raise s.fail("ports", "names a port twice")
    for url in ports:
        try:
            make_transport(url)
        except TransportError as exc:
            raise s.fail("ports", f"holds a bad URL: {exc}") from None
    baud = s.int("baud", 115200, 1200, 12_000_000, "a baud rate")
    lo = s.number("reconnect_min_s", 0.5, 0.05, 60.0)
    hi = s.number("reconnect_max_s", 10.0, 0.05, 600.0)
    if hi < lo:
        raise s.fail("reconnect_max_s", f"is below reconnect_min_s = {lo:g}")
    link_table = s.table
    t = section("link.timers", link_table.get("timers", {}))
    defaults = LinkTimers()
    keepalive = t.number("keepalive_s", defaults.keepalive_s, 0.1, 600.0)
    dead = t.number("dead_after_s", defaults.dead_after_s, 0.3, 3600.0)
    if dead <= keepalive:
        raise t.fail("dead_after_s", f"must be longer than keepalive_s = {keepalive:g}")
    timers = LinkTimers(
        rto_base_s=t.number("rto_base_s", defaults.rto_base_s, 0.01, 30.0),
        byte_rate=baud / 10,  # 8N1: ten bits a byte
        max_tries=t.int("max_tries", defaults.max_tries, 1, 100, "a number of tries"),
        window=t.int("window", defaults.window, 1, 256, "a number of frames"),
        keepalive_s=keepalive,
        dead_after_s=dead,
        hello_retry_s=t.number("hello_retry_s", defaults.hello_retry_s, 0.05, 60.0),
        marks_refresh_s=t.number("marks_refresh_s", defaults.marks_refresh_s, 0.1, 3600.0),
    )
    stall = s.number("stall_alarm_s", 600.0, 0.1, 7 * 86400.0)
    return LinkConfig(ports, baud, lo, hi, timers, stall)


def _log(s: _Section, base: Path) -> LogConfig:
    level = s.str("level", "INFO", lambda v: None if v.upper() in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}")
    file = s.str("file", "")
    return LogConfig(level=level.upper(), file=(base / file).resolve() if file else None)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise BridgeConfigError(f"{path}: cannot read the configuration ({exc.strerror}); create one with his-bridge init DIR") from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise BridgeConfigError(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BridgeConfigError(f"{path}: is not valid TOML: {exc}") from None
    return parse_config(data, source=path.name, base_dir=path.parent.resolve())
