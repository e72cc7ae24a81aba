"""Assemble and run the bridge: configuration -> keys, registries, journal, relay, device ports, HTTP.

`Bridge(config)` builds everything (and fails early with a message naming what is wrong);
`start()` opens the HTTP listener and the device ports; `stop()` shuts down gracefully: stop
accepting, wake long polls so they answer now, let in-flight requests finish, stop the ports,
close the journal (every transition was committed when it happened, so it is consistent at any
instant). `serve(config_path)` is `his-bridge serve`: the same plus signal handling (SIGINT,
SIGTERM; Ctrl-C, Ctrl-Break and service stop on Windows).
"""

from __future__ import annotations

import importlib.metadata

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from bridge.config import Config, load_config
from bridge.devicelink import DevicePort
from bridge.httpapi import BridgeHTTPServer
from bridge.journal import Journal, JournalError
from bridge.keystore import WatchedKeyFile, load_identity
from bridge.logjson import log_event, setup_logging
from bridge.registries import Registries
from bridge.relay import Relay, RelaySettings
from bridge.retention import prune
from local_storage.stop_signals import StopSignals
from protocol.strictjson import ReportJson

log = logging.getLogger("bridge.daemon")

def _package_version() -> str:
    """The installed package's version (setup.cfg), which /v1/health reports (issue 15, finding 8)."""
    try:
        return importlib.metadata.version("his-smartpos")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


VERSION = _package_version()
SHUTDOWN_GRACE_S = 10.0
# Retention runs this long after the start (not in the way of a morning's first payments), then daily.
PRUNE_FIRST_AFTER_S = 600.0
PRUNE_EVERY_S = 86400.0


class Bridge:
    def __init__(self, config: Config, *, usb_backend: object = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock  # this PC's wall clock (tests step it: issue 14, finding 1)

        def warn(message: str) -> None:
            log_event(log, "config_file_error", message, level=logging.ERROR)

        self.identity = load_identity(config.security.identity_file)  # refuses a key others can read
        self.keys = WatchedKeyFile(config.security.key_file, on_error=warn)
        if not self.keys.ring().active():
            log_event(log, "no_active_keys", level=logging.WARNING,
                      msg="the key file has no active key: every instruction will be refused (unknown_kid)")
        self.registries = Registries(config.registry.devices, config.registry.terminals, on_error=warn)
        self.journal = Journal(config.journal.path, synchronous=config.journal.synchronous,
                               busy_timeout_s=config.journal.busy_timeout_s, clock=clock)
        if self.journal.locked:
            log_event(log, "journal_integrity_failed", level=logging.CRITICAL, journal=str(config.journal.path),
                      reason=self.journal.integrity.reason, problems=list(self.journal.integrity.problems[:20]),
                      msg="the bridge starts locked: no instruction is taken, no result served, the device port stays "
                          "closed; recover with `his-bridge journal check` and `his-bridge journal restore` (docs/bridge.md)")
        settings = RelaySettings(config.security.clock_skew_s, config.security.answer_ttl_s,
                                 config.security.amount_limit_fen, config.security.his_signature,
                                 instruction_ttl_s=config.security.instruction_ttl_s, stall_alarm_s=config.link.stall_alarm_s)
        self.relay = Relay(journal=self.journal, keys=self.keys.ring, registries=self.registries, settings=settings,
                           clock=clock)
        link = config.link
        self.ports = [
            DevicePort(url, self.relay, public_key_for=self.registries.public_key_for,
                       host_key_seed=self.identity.seed, timers=link.timers,
                       baud=link.baud, reconnect_min_s=link.reconnect_min_s, reconnect_max_s=link.reconnect_max_s,
                       usb_backend=usb_backend, clock=clock)
            for url in link.ports
        ]
        self.relay.ports = self.ports  # type: ignore[assignment]  # the relay takes any sequence of ports; the daemon's are DevicePorts
        try:
            self.http = BridgeHTTPServer(config.http, self.relay, self.health)
        except OSError as exc:
            self.journal.close()
            raise OSError(f"cannot listen on {config.http.host}:{config.http.port}: {exc.strerror}; "
                          "is another bridge already running? ([http] port in the configuration)") from None
        self._http_thread: threading.Thread | None = None
        self._stop_pruning = threading.Event()
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._stopped = False

    @property
    def url(self) -> str:
        host, port = self.http.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def start(self) -> "Bridge":
        # A locked journal keeps the device ports closed: the POS holds its results until the journal
        # is recovered, instead of handing them to a bridge that cannot keep them.
        for port in self.ports if not self.journal.locked else ():
            port.start()
        self._http_thread = threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05},
                                             name="http", daemon=True)
        self._http_thread.start()
        if not self.journal.locked:
            threading.Thread(target=self._prune_daily, name="retention", daemon=True).start()
            self.relay.start_rechecks()
        log_event(log, "bridge_started", url=self.url, ports=list(self.config.link.ports),
                  journal=str(self.config.journal.path), version=VERSION)
        return self

    def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        if self._stopped:
            return
        self._stopped = True
        log_event(log, "bridge_stopping")
        self.http.stopping = True
        self._stop_pruning.set()
        self.relay.begin_shutdown()  # long polls answer now with the state they have
        self.http.shutdown()  # stop accepting
        drained = self.http.drain(grace_s)
        self.http.server_close()
        for port in self.ports:
            port.stop()
        self.journal.close()
        log_event(log, "bridge_stopped", drained=drained)

    def _prune_daily(self) -> None:
        wait = PRUNE_FIRST_AFTER_S
        while not self._stop_pruning.wait(wait):
            wait = PRUNE_EVERY_S
            journal = self.config.journal
            try:
                report = prune(self.journal, journal.archive_dir or journal.path.parent / "archive",
                               retention_days=journal.retention_days, now=time.time())
            except (JournalError, OSError) as exc:  # tried again tomorrow; nothing was removed unarchived
                log_event(log, "journal_prune_failed", level=logging.ERROR, reason=str(exc))
                continue
            if report.archived:
                log_event(log, "journal_pruned", archived=report.archived, months=list(report.months))

    def health(self) -> ReportJson:
        now = self.clock()
        devices = []
        for port in self.ports:
            status = port.status()
            device_id = status.get("device_id")
            if isinstance(device_id, str):
                status["terminals"] = self.registries.terminals_of(device_id)
                status["journal_problem"] = self.relay.device_problems.get(device_id)
            devices.append(status)
        journal = self.journal.health()
        try:
            counts = self.journal.counts()
            journal["held_results"] = self.journal.held_summary()
        except JournalError as exc:
            counts = {}
            journal["storage"] = {"ok": False, "cause": exc.cause.value, "message": str(exc)}
        all_up = bool(devices) and all(d["link"] == "up" for d in devices)
        storage_ok = (bool(journal["storage"]["ok"])  # type: ignore[index]  # the journal's health report, built a few lines above
                      and not any(d.get("journal_problem") for d in devices)
                      and not journal.get("held_results", {}).get("count")  # type: ignore[union-attr]  # the same report: held_results is a dict when present
                      and not self.relay.stalled)
        status = "locked" if self.journal.locked else "ok" if all_up and storage_ok else "degraded"
        return {
            "status": status,
            "journal": journal,
            "version": VERSION,
            "clock": {"unix": int(now), "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
            "uptime_s": int(time.monotonic() - self._started_mono),
            "devices": devices,
            "instructions": {"unfinished": sum(n for s, n in counts.items() if s not in ("result_stored", "refused")),
                             "by_state": counts, "not_taken": self.relay.not_taken(),
                             "stalled": list(self.relay.stalled.values())},
            "keys": [{"kid": k.kid, "suite": k.suite} for k in self.keys.ring().active()],
        }


def serve(config_path: str | Path, *, usb_backend: object = None) -> int:
    """Run until SIGINT/SIGTERM (Ctrl-C / Ctrl-Break / service stop on Windows). Returns 0."""
    config = load_config(config_path)
    setup_logging(config.log.level, config.log.file)
    bridge = Bridge(config, usb_backend=usb_backend)
    # SIGBREAK: Windows Ctrl-Break and service wrappers. The note is logged off the signal handler.
    stop = StopSignals(on_signal=lambda name: log_event(log, "signal", signal=name)).install()
    bridge.start()
    try:
        stop.wait()
    finally:
        bridge.stop()
        stop.close()
    return 0
