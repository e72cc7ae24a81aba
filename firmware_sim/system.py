"""The whole system on one machine, headless: channel sandbox, the provider's gateway, one simulated POS, the bridge.

    python -m firmware_sim.system --headless [--workdir .run] [--fresh] [--devices N]   (make run HEADLESS=1 [DEVICES=N])

First run (a clean workdir), it does what the field engineer and the hospital's IT would do:
1. starts `channel-sandbox` (WeChat Pay / Alipay on loopback);
2. makes a release signing key and provisions a device (`pos-sim init` on the device, `pos-flash provision add-device`);
3. `his-bridge init`: a bridge directory with a fresh shared key; imports the device records and
   HIS's terminal list (T0001 bound to the device); exports the device CSV for HIS;
4. onboards the demo hospital at the gateway (`gateway-admin` steps, firmware_sim.demo_gateway: the
   sandbox's merchant credentials, the bridge's HIS keys, the device and T0001) and starts
   `payment-gateway` on loopback with SQLite: the POS pays through it and holds no channel secret;
5. starts the device (`pos-sim run`), which boots into recovery mode (no image yet), and flashes a
   signed configuration image onto it over its link (`pos-flash flash` steps: the shared key, the
   terminal list, the gateway URL, the demo supervisor and admin PINs); the device reboots into
   it, starts the terminal service and confirms its health;
6. `his-bridge serve`, and waits until the bridge's /v1/health shows the device's link up;
7. writes <workdir>/demo.json (mode 600: it holds the shared key) and prints it, with three lines
   to copy.
`--devices N` (headless) starts N simulated POS, one per window: device i has terminal T000i, its
storage in <workdir>/device (i = 1) or <workdir>/device-i, and one bridge serves them all (HIS
routes by terminal_id); demo.json lists them under "devices", so an HIS vendor can test two windows.

Later runs reuse everything (same keys, same device, same journals, same gateway database); the
configuration is flashed again only when the gateway had to move to another port. `--fresh` starts from nothing.

Ctrl-C or SIGTERM stops the bridge, then the device, then the gateway, then the sandbox (each SIGTERM'd and waited
for; every journal is consistent at any instant). Children run in their own process groups and die
with the launcher even when it is killed (firmware_sim.children).

For the lead and the UI engineer: `start_system(SystemOptions(...)) -> System` starts everything and
returns the handles (children, URLs, the demo dict); `System.stop()` stops it. `--ui` passes
`--ui` to the device process, which shows the POS screens around its terminal service
(firmware_sim/screen.py). A HIS console gets `System.demo_path` (his-client --demo takes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from protocol.flash import FlashError
from protocol.limits import format_limits
from protocol.keyfile import parse_keyfile
from protocol.registry import TerminalRecord, format_terminal_csv, parse_device_csv

from bridge import registries
from posflash import provision
from firmware_sim import demo_setup
from firmware_sim.children import Child, run_tool
from firmware_sim.simerrors import SimCode, SimError
from firmware_sim.demo_gateway import ALIPAY_SETUPS, WECHAT_SETUPS, DemoGateway, resolve_setups
from firmware_sim.usb_cable import RemoteUsbBackend
from local_storage.atomic_file import write_atomically
from local_storage.stop_signals import StopSignals

log = logging.getLogger("firmware_sim.system")

DEFAULT_WORKDIR = Path(".run")
DEFAULT_BRIDGE_PORT = 8765  # his-interface-v1's default: what HIS vendors configure
START_TIMEOUT_S = 60.0
LINK_UP_TIMEOUT_S = 60.0
STATE = "system.json"
DEMO = "demo.json"
# What the demo's configuration holds; a workdir configured with an older one is flashed again
# (2: the admin PIN, so the POS's settings open; 3: the gateway instead of channel settings).
CONFIG_LAYOUT = 3
# The hospital's per-transaction limit as the demo gateway exports it (gateway-admin hospital limits),
# in the gateway's directory: the bridge's limits_file and each POS's configuration come from it.
LIMITS_FILE = "limits.json"
# What --fresh removes (and nothing else: a workdir may hold the user's own files).
OWNED = ("channel-sandbox", "gateway", "signing", "device", "records.csv", "his", "bridge", "logs", "receipts", DEMO, STATE)


@dataclass(frozen=True, slots=True)
class SystemOptions:
    workdir: Path = DEFAULT_WORKDIR
    fresh: bool = False
    bridge_port: int = DEFAULT_BRIDGE_PORT  # 0: ephemeral (tests); a busy default falls back to ephemeral
    link: str = "pty" if os.name == "posix" else "tcp"
    baud: int | None = None
    ui: bool = False
    orientation: str = "portrait"  # the POS window (--ui): portrait 720x1280 scaled to fit, or landscape 800x480
    start_timeout_s: float = START_TIMEOUT_S
    devices: int = 1  # simulated POS, one terminal each (headless; --devices)
    wechat: str | None = None  # how the demo hospital takes WeChat Pay at the gateway (demo_gateway.WECHAT_SETUPS; --wechat)
    alipay: str | None = None  # and Alipay (demo_gateway.ALIPAY_SETUPS; --alipay); None: what goes with the other (resolve_setups)


MAX_DEVICES = 8


def device_terminal(index: int) -> TerminalRecord:
    """The HIS terminal of the index-th simulated POS (1-based): T0001 is the demo's first window."""
    if index == 1:
        return demo_setup.DEMO_TERMINAL
    return TerminalRecord(f"T{index:04d}", f"门诊收费{index}号窗口 (simulated)")


def device_storage(workdir: Path, index: int) -> Path:
    return workdir / ("device" if index == 1 else f"device-{index}")


@dataclass
class DemoDevice:
    """One simulated POS of the system: its window (terminal), storage, process and link."""

    index: int
    terminal: TerminalRecord
    storage: Path
    provisioned: demo_setup.ProvisionedDevice
    sim_url: str = ""
    link: str = ""

    @property
    def name(self) -> str:
        return "device" if self.index == 1 else f"device-{self.index}"

    def demo_entry(self) -> dict[str, object]:
        return {"terminal_id": self.terminal.terminal_id, "device_id": self.provisioned.device_id, "sim_url": self.sim_url,
                "sim_storage": str(self.storage.resolve()), "device_link": self.link}


@dataclass
class System:
    options: SystemOptions
    children: list[Child] = field(default_factory=list)  # in start order; stopped in reverse
    demo: dict[str, object] = field(default_factory=dict)
    sandbox_url: str = ""
    gateway_url: str = ""
    sim_url: str = ""
    bridge_url: str = ""
    device_link: str = ""
    usb_cable: str = ""  # --link aoa: the simulated USB bus of the device process (firmware_sim.usb_cable)
    devices: list[DemoDevice] = field(default_factory=list)  # device 1's sim_url / device_link are also above
    channel_setups: dict[str, str] = field(default_factory=dict)  # how the demo hospital takes each channel (demo.json)

    def usb_backend(self) -> object | None:
        return RemoteUsbBackend(self.usb_cable) if self.usb_cable else None

    @property
    def workdir(self) -> Path:
        return self.options.workdir

    @property
    def demo_path(self) -> Path:
        return self.workdir / DEMO

    def child(self, name: str) -> Child | None:
        return next((c for c in self.children if c.name == name), None)

    def dead_children(self) -> list[Child]:
        return [c for c in self.children if not c.alive()]

    def stop(self) -> dict[str, int | None]:
        """Stop the children, newest first (bridge, device, sandbox); their exit statuses by name."""
        statuses: dict[str, int | None] = {}
        for child in reversed(self.children):
            began = time.monotonic()
            statuses[child.name] = child.stop()
            log.info("%s stopped (exit %s) in %.1f s", child.name, statuses[child.name], time.monotonic() - began)
        return statuses


# ----------------------------------------------------------------------------- state and files


def _load_state(workdir: Path) -> dict[str, object]:
    try:
        state = json.loads((workdir / STATE).read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_state(workdir: Path, state: dict[str, object]) -> None:
    write_atomically(workdir / STATE, json.dumps(state, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    write_atomically(path, text, private=True)


def _clean(workdir: Path) -> None:
    for name in (*OWNED, *(p.name for p in workdir.glob("device-*"))):
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


class WorkdirLock:
    """One system per workdir (an OS lock on <workdir>/system.lock, released when the process dies)."""

    def __init__(self, workdir: Path) -> None:
        from firmware_sim.simrun import StorageLock

        try:
            self._lock = StorageLock(workdir, "system.lock", "headless system")
        except SimError:
            raise SimError(SimCode.STORAGE, f"another system runs on {workdir} (stop it with Ctrl-C), or use --workdir") from None

    def release(self) -> None:
        self._lock.release()


def _python(*module_args: str) -> list[str]:
    return [sys.executable, *module_args]


def bridge_config_text(*, port: int, link_url: str | list[str], baud: int | None, limits_file: Path | None = None) -> str:
    """The bridge's config.toml for the demo (rewritten at every start: the device's port may move).
    `limits_file`: the hospital's limit as the gateway exported it (the one source, docs/amounts.md)."""
    limits = "" if limits_file is None else f"limits_file = {json.dumps(str(limits_file))}\n"
    return (
        "# Written by firmware_sim.system at every start of the headless system (docs/simulator.md).\n"
        "# A real bridge's configuration is documented in docs/bridge.md.\n\n"
        f"[http]\nhost = \"127.0.0.1\"\nport = {port}\n\n"
        "[security]\nkey_file = \"keys.json\"\n" + limits + "\n"
        "[registry]\ndevices = \"devices.csv\"\nterminals = \"terminals.csv\"\n\n"
        "[journal]\npath = \"journal.sqlite3\"\n\n"
        f"[link]\nports = [{', '.join(json.dumps(u) for u in ([link_url] if isinstance(link_url, str) else link_url))}]\n"
        f"baud = {baud or 115200}\n"
        "reconnect_min_s = 0.2\nreconnect_max_s = 2.0\n\n"
        "[log]\nlevel = \"INFO\"\nfile = \"../logs/bridge.log\"\n"
    )


# ----------------------------------------------------------------------------- the parts


def _start_on_saved_port(system: System, state: dict[str, object], name: str, command: Callable[[int], list[str]],
                         *, env: dict[str, str] | None = None) -> dict[str, object]:
    """Start child `name` on the port it had last time (its URL stays the same across restarts), or on a
    new one when that port is taken; remember the port in `state` and return the child's ready line."""
    key = f"{name}_port"
    saved = state.get(key)
    ports = [saved, 0] if isinstance(saved, int) and saved > 0 else [0]
    for port in ports:
        child = Child(name, command(port), system.workdir / "logs" / f"{name}.log", env=env).start()
        try:
            ready = child.ready_line(system.options.start_timeout_s)
        except SimError:
            child.stop()
            if port != ports[-1]:
                log.warning("the %s could not take its earlier port %s again; using a new one", name, port)
                continue
            raise
        except BaseException:  # Ctrl-C while it starts: not yet among system.children, so stopped here
            child.stop()
            raise
        system.children.append(child)
        state[key] = int(str(ready["url"]).rsplit(":", 1)[1])
        return ready
    raise AssertionError("the last port is 0, which always either starts or raises")


def _start_sandbox(system: System, state: dict[str, object]) -> None:
    data_dir = str(system.workdir / "channel-sandbox")
    ready = _start_on_saved_port(system, state, "sandbox", lambda port: _python(
        "-m", "firmware_sim.sandbox.server", "--port", str(port), "--data-dir", data_dir))
    system.sandbox_url = str(ready["url"])
    state["sandbox_credentials"] = str(ready["credentials"])


def limits_path(workdir: Path) -> Path:
    return workdir / "gateway" / LIMITS_FILE


def _start_gateway(system: System, state: dict[str, object], devices: list[DemoDevice], keys_text: str) -> None:
    """Onboard the demo hospital (idempotent) and run `payment-gateway` on loopback, SQLite."""
    workdir = system.workdir
    gateway = DemoGateway(workdir / "gateway")
    try:
        wechat, alipay = resolve_setups(system.options.wechat, system.options.alipay)
        gateway.onboard(Path(str(state["sandbox_credentials"])), keys_text, wechat=wechat, alipay=alipay)
        system.channel_setups = {"wechat": wechat, "alipay": alipay}
        for device in devices:
            gateway.enroll(device.provisioned.record(), device.terminal)
        # `gateway-admin hospital limits`: the hospital's limit, which the bridge and each POS are provisioned from.
        limits_path(workdir).write_text(format_limits(gateway.tenancy.limits(gateway.hospital_id)), encoding="utf-8")
    finally:
        gateway.close()
    ready = _start_on_saved_port(system, state, "gateway", lambda port: _python(
        "-m", "gateway.server", "--db", gateway.db_url, "--listen", f"127.0.0.1:{port}",
        "--bills-dir", str(workdir / "gateway" / "bills")),  # the demo hospital's T+1 bills, for `reconcile --bills-dir`
        env=dict(os.environ) | gateway.command_env())
    system.gateway_url = str(ready["url"])


def _init_bridge_dir(workdir: Path) -> Path:
    """`his-bridge init`: the shared key and the bridge's link identity (which the device pins)."""
    bridge_dir = workdir / "bridge"
    if not (bridge_dir / "keys.json").exists():
        run_tool(_python("-m", "bridge.cli", "init", str(bridge_dir)))
    return bridge_dir


def _prepare_bridge_dir(workdir: Path, records: Path, devices: list[DemoDevice]) -> Path:
    bridge_dir = workdir / "bridge"
    his = workdir / "his"
    his.mkdir(exist_ok=True)
    terminals = his / "terminals.csv"  # what HIS gives us in step 2: one window per device
    terminals.write_text(format_terminal_csv([TerminalRecord(d.terminal.terminal_id, d.terminal.description, d.provisioned.device_id)
                                              for d in devices]), encoding="utf-8")
    registries.import_devices(bridge_dir / "devices.csv", records)
    registries.import_terminals(bridge_dir / "terminals.csv", terminals, bridge_dir / "devices.csv")
    registries.export_devices_for_his(bridge_dir / "devices.csv", his / "devices.csv")  # what HIS gets in step 2
    return bridge_dir


def _start_device(system: System, device: DemoDevice) -> dict[str, object]:
    workdir, opts = system.workdir, system.options
    command = _python("-m", "firmware_sim.cli", "run", "--storage", str(device.storage), "--exit-with-parent")
    command += {"tcp": ["--tcp", "0"], "aoa": ["--aoa"]}.get(opts.link, ["--pty"])
    if opts.baud:
        command += ["--baud", str(opts.baud)]
    if opts.ui:  # receipts "printed" on the screens land in the workdir, where the demo's user finds them
        command += ["--ui", "--orientation", opts.orientation, "--receipts-dir", str((workdir / "receipts").resolve())]
    child = Child(device.name, command, workdir / "logs" / f"{device.name}.log").start()
    system.children.append(child)
    ready = child.ready_line(opts.start_timeout_s)
    device.sim_url = str(ready["control_url"])
    device.link = str(ready["bridge_url"])
    if device.index == 1:
        system.sim_url, system.device_link = device.sim_url, device.link
        system.usb_cable = str(ready.get("usb_cable", ""))
    return ready


def _sim_status(system: System, device: DemoDevice) -> dict[str, object]:
    try:
        return requests.get(device.sim_url + "/v1/status", timeout=10).json()
    except (requests.RequestException, ValueError):
        child = system.child(device.name)
        tail = child.log_tail() if child is not None else ""
        raise SimError(SimCode.START_FAILED, f"the simulated device stopped answering; see {system.workdir}/logs/{device.name}.log:\n{tail}") from None


def _configure_device(system: System, state: dict[str, object], device: DemoDevice,
                      signing: demo_setup.SigningFiles, records: Path, keys_text: str, host_key: Path) -> None:
    """Flash a configuration image when the device has none or it names another gateway URL."""
    # Device 1 keeps its flashing state at the top (as before --devices); device i under "device-i".
    mine = state if device.index == 1 else state.setdefault(device.name, {})
    assert isinstance(mine, dict)
    status = _sim_status(system, device)
    limit_yuan = provision.limit_from_file(limits_path(system.workdir))  # the hospital's, from the gateway
    if (status["power"] == "on" and mine.get("configured_for") == system.gateway_url
            and mine.get("config_layout") == CONFIG_LAYOUT and mine.get("configured_limit") == limit_yuan):
        return
    version = int(mine.get("config_version", 0) or 0) + 1
    gateway = {"url": system.gateway_url}  # plain http on loopback; a real POS pins an https certificate
    provisioned = device.provisioned
    image = demo_setup.configuration_image(provisioned, records, signing, keys_text=keys_text, gateway=gateway, version=version,
                                           limit_yuan=limit_yuan,
                                           terminals_csv=demo_setup.terminals_csv((device.terminal,), provisioned.device_id))
    log.info("flashing configuration cfg-%d onto %s over %s", version, provisioned.device_id, device.link)
    try:
        outcome = demo_setup.flash(device.link, image, records, host_key=host_key, usb_backend=system.usb_backend())
    except FlashError as exc:
        raise SimError(SimCode.START_FAILED, f"flashing the configuration failed: {exc.message}; "
                       f"see {system.workdir}/logs/{device.name}.log") from None
    if not outcome.confirmed:
        raise SimError(SimCode.START_FAILED, f"the device did not confirm configuration cfg-{version}; see {system.workdir}/logs/{device.name}.log")
    mine.update(config_version=version, configured_for=system.gateway_url, config_layout=CONFIG_LAYOUT, configured_limit=limit_yuan)
    _save_state(system.workdir, state)
    deadline = time.monotonic() + system.options.start_timeout_s
    while _sim_status(system, device)["power"] != "on":
        if time.monotonic() > deadline:
            raise SimError(SimCode.START_FAILED, "the device did not come up after flashing its configuration")
        time.sleep(0.1)


def _bridge_started(log_path: Path, offset: int) -> str | None:
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "bridge_started":
            return str(event["url"])
    return None


def _start_bridge(system: System, bridge_dir: Path) -> None:
    workdir, opts = system.workdir, system.options
    bridge_log = workdir / "logs" / "bridge.log"
    for port in dict.fromkeys([opts.bridge_port, 0]):
        (bridge_dir / "config.toml").write_text(bridge_config_text(port=port, link_url=[d.link for d in system.devices], baud=opts.baud,
                                                                   limits_file=limits_path(workdir)),
                                                encoding="utf-8")
        offset = bridge_log.stat().st_size if bridge_log.exists() else 0
        config = str(bridge_dir / "config.toml")
        command = _python("-m", "bridge.cli", "--config", config, "serve")
        if system.usb_cable:  # the real bridge, on the simulated USB bus instead of libusb
            command = _python("-m", "firmware_sim.usb_cable", "--cable", system.usb_cable, "--config", config)
        child = Child("bridge", command, workdir / "logs" / "bridge-stderr.log").start()
        deadline = time.monotonic() + opts.start_timeout_s
        try:
            while time.monotonic() < deadline:
                url = _bridge_started(bridge_log, offset)
                if url is not None:
                    system.children.append(child)
                    system.bridge_url = url
                    return
                if not child.alive():
                    break
                time.sleep(0.05)
        except BaseException:  # Ctrl-C while it starts: not yet among system.children, so stopped here
            child.stop()
            raise
        child.stop()
        if port != 0 and "cannot listen" in child.log_tail():
            log.warning("port %d is taken (another bridge?); the demo bridge takes an ephemeral port instead", port)
            continue
        raise SimError(SimCode.START_FAILED, f"the bridge did not start; see {bridge_log} and {child.log_path}:\n{child.log_tail()}")
    raise SimError(SimCode.START_FAILED, "the bridge did not start on any port")


def _wait_link_up(system: System) -> dict[str, object]:
    deadline = time.monotonic() + LINK_UP_TIMEOUT_S
    health: dict[str, object] = {}
    while time.monotonic() < deadline:
        try:
            health = requests.get(system.bridge_url + "/v1/health", timeout=5).json()
        except (requests.RequestException, ValueError):
            health = {}
        devices = health.get("devices") or []
        if len(devices) == len(system.devices) and all(d.get("link") == "up" for d in devices):
            return health
        dead = system.dead_children()
        if dead:
            raise SimError(SimCode.START_FAILED, f"{dead[0].name} exited; see {dead[0].log_path}:\n{dead[0].log_tail()}")
        time.sleep(0.1)
    raise SimError(SimCode.START_FAILED, f"the bridge never saw the device's link up within {LINK_UP_TIMEOUT_S:g} s: "
                   f"{json.dumps(health.get('devices'))}")


def _demo(system: System, bridge_dir: Path, device_id: str) -> dict[str, object]:
    ring = parse_keyfile((bridge_dir / "keys.json").read_text(encoding="utf-8"), str(bridge_dir / "keys.json"))
    key = ring.active()[-1]
    registry = system.workdir / "his" / "devices.csv"
    assert {d.provisioned.device_id for d in system.devices} <= {d.device_id for d in parse_device_csv(registry.read_text(encoding="utf-8"))}
    # The top-level terminal_id / device_id / sim_url are device 1's (what a one-window HIS uses);
    # "devices" lists every window: HIS sends to a window by its terminal_id.
    return {
        "bridge_url": system.bridge_url, "suite": key.suite, "kid": key.kid, "key_hex": key.secret.hex(),
        "terminal_id": demo_setup.DEMO_TERMINAL.terminal_id, "device_id": device_id,
        "device_registry": "his/devices.csv", "sim_url": system.sim_url, "sandbox_url": system.sandbox_url,
        "gateway_url": system.gateway_url, "channel_setups": system.channel_setups,
        "supervisor_pin": demo_setup.DEMO_PIN, "admin_pin": demo_setup.DEMO_ADMIN_PIN,
        "sim_storage": str((system.workdir / "device").resolve()), "device_link": system.device_link,
        "sandbox_control_url": system.sandbox_url + "/sandbox/v1",
        "devices": [d.demo_entry() for d in system.devices],
    }


def start_system(options: SystemOptions) -> System:
    """Start sandbox, gateway, device(s) and bridge, wired; return the handles (stop them with System.stop())."""
    if not 1 <= options.devices <= MAX_DEVICES:
        raise SimError(SimCode.BAD_REQUEST,
                       f"--devices must be 1..{MAX_DEVICES}, not {options.devices}")
    if options.devices > 1 and (options.ui or options.link == "aoa"):
        raise SimError(SimCode.BAD_REQUEST,
                       "--devices N is for the headless system over pty or tcp links (one POS window, or --link aoa, "
                       "drives a single device)")
    try:
        resolve_setups(options.wechat, options.alipay)
    except ValueError as exc:
        raise SimError(SimCode.BAD_REQUEST, str(exc)) from None
    workdir = options.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    if options.fresh:
        _clean(workdir)
    (workdir / "logs").mkdir(mode=0o700, exist_ok=True)
    system = System(options)
    state = _load_state(workdir)
    try:
        _start_sandbox(system, state)
        _save_state(workdir, state)
        signing = demo_setup.ensure_signing_key(workdir / "signing")
        records = workdir / "records.csv"
        bridge_dir = _init_bridge_dir(workdir)
        hosts = demo_setup.ensure_host_keys(workdir / "pos-flash", bridge_key=bridge_dir / "bridge_identity.key")
        for index in range(1, options.devices + 1):
            storage = device_storage(workdir, index)
            serial = demo_setup.DEMO_SERIAL if index == 1 else f"SIM{index:04d}"
            provisioned = demo_setup.ensure_device(storage, records, signing, hosts=hosts.pins(), serial_no=serial)
            system.devices.append(DemoDevice(index, device_terminal(index), storage, provisioned))
        _prepare_bridge_dir(workdir, records, system.devices)
        keys_text = (bridge_dir / "keys.json").read_text(encoding="utf-8")
        _start_gateway(system, state, system.devices, keys_text)
        _save_state(workdir, state)
        for device in system.devices:
            _start_device(system, device)
            _configure_device(system, state, device, signing, records, keys_text, hosts.maintenance)
        _start_bridge(system, bridge_dir)
        _wait_link_up(system)
        system.demo = _demo(system, bridge_dir, system.devices[0].provisioned.device_id)
        _write_private(system.demo_path, json.dumps(system.demo, indent=2) + "\n")
    except BaseException:
        system.stop()
        raise
    return system


def next_steps(system: System) -> list[str]:
    demo = os.path.relpath(system.demo_path)
    storage = os.path.relpath(system.workdir / "device")
    storage_arg = "" if storage == os.path.join(".run", "device") else f" --storage {storage}"
    demo_arg = "" if demo == os.path.join(".run", "demo.json") else f" --demo {demo}"
    channel = "ALIPAY" if system.options.alipay else "WECHAT"  # `make run ALIPAY=...`: try the Alipay setup asked for
    steps = [  # the README's sequence: each returns, so all of it works in one terminal
        f"1. HIS sends +12.50:           his-client --demo {demo} pay +12.50 --order MZ0001 --wait 3",
        f"2. a patient's code, scanned:  pos-sim scan --new-code {channel}{storage_arg}{demo_arg}",
        f"3. HIS reads the result:       his-client --demo {demo} status --last --wait 30",
    ]
    for device in system.devices[1:]:
        other = os.path.relpath(device.storage)
        steps.append(f"   window {device.terminal.terminal_id}:               his-client --demo {demo} --terminal {device.terminal.terminal_id} "
                     f"pay +8.00 --order MZ0002 --wait 3 ; pos-sim scan --new-code ALIPAY --storage {other}{demo_arg}")
    return steps


# ----------------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim.system",
        description="Run the whole system on this machine: channel sandbox, the gateway, one simulated POS and the bridge, wired "
                    "together; writes <workdir>/demo.json for HIS clients (his-client --demo). Ctrl-C stops everything.",
        epilog="docs/simulator.md explains demo.json, the device control API and fault injection.")
    parser.add_argument("--headless", action="store_true", help="no screens (the default; what `make run HEADLESS=1` runs)")
    parser.add_argument("--ui", action="store_true", help="also show the POS screens (Kivy; needs a display)")
    parser.add_argument("--console", action="store_true",
                        help="run the HIS console in this terminal once the system is up; leaving it stops everything")
    parser.add_argument("--auto", action="store_true",
                        help="what `make run` does: screens and the HIS console when there is a display, "
                             "otherwise say so and start headless")
    parser.add_argument("--orientation", choices=("portrait", "landscape"), default="portrait",
                        help="the POS window: portrait 720x1280 (scaled to fit the display, the default) or landscape 800x480")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="where state lives (default .run)")
    parser.add_argument("--fresh", action="store_true", help="forget the earlier state: new keys, new device, new journals")
    parser.add_argument("--bridge-port", type=int, default=DEFAULT_BRIDGE_PORT,
                        help=f"the bridge's HTTP port (default {DEFAULT_BRIDGE_PORT}; 0: ephemeral; a busy port falls back to ephemeral)")
    parser.add_argument("--link", choices=["pty", "tcp", "aoa"], default=SystemOptions.link,
                        help="how the bridge reaches the device: a pty (serial:), TCP (socket://), or aoa: a simulated "
                             "Android POS the bridge switches to accessory mode over the simulated USB bus (aoa://)")
    parser.add_argument("--baud", type=int, help="pace the link at this baud rate (115200, 921600)")
    parser.add_argument("--wechat", choices=list(WECHAT_SETUPS),
                        help="how the demo hospital takes WeChat Pay: its own merchant account or a sub-merchant of the sandbox's "
                             "service provider (-provider), over API v2 or APIv3 (default v2, or v2-provider with --alipay third-party)")
    parser.add_argument("--alipay", choices=list(ALIPAY_SETUPS),
                        help="how it takes Alipay: its own app with the Alipay public key or in certificate mode, or our third-party "
                             "application, which the hospital authorises (app_auth_code -> app_auth_token; goes with a -provider "
                             "WeChat setup); default public-key, or third-party with a -provider WeChat setup")
    parser.add_argument("--devices", type=int, default=1, metavar="N",
                        help=f"headless: N simulated POS (1..{MAX_DEVICES}), one window each (T0001, T0002, ...), one bridge; "
                             "all listed in demo.json's \"devices\"")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.ui and args.headless:
        print("firmware_sim.system: --ui and --headless exclude each other", file=sys.stderr)
        return 2
    if args.auto:
        from terminal.ui import display

        if display.has_display():
            args.ui = args.console = True
        else:
            print("No display here, so no POS screens: starting the headless system instead "
                  "(next time: make run HEADLESS=1). The simulator's control API plays the cashier.", flush=True)
            args.headless = True
    if args.ui:
        from terminal.ui import display

        if not display.has_display():
            print(f"firmware_sim.system: {display.HEADLESS_HINT}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s system %(levelname)s %(message)s")
    options = SystemOptions(workdir=args.workdir, fresh=args.fresh, bridge_port=args.bridge_port, link=args.link,
                            baud=args.baud, ui=args.ui, orientation=args.orientation, devices=args.devices, wechat=args.wechat,
                            alipay=args.alipay)
    stop = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # while starting: start_system stops what it started

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    try:
        args.workdir.mkdir(parents=True, exist_ok=True)
        lock = WorkdirLock(args.workdir)
    except SimError as exc:
        print(f"firmware_sim.system: {exc.message}", file=sys.stderr)
        return 1
    try:
        try:
            system = start_system(options)
        except SimError as exc:
            print(f"firmware_sim.system: {exc.code.value}: {exc.message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("firmware_sim.system: interrupted while starting; everything started was stopped", file=sys.stderr)
            return 130
        except Exception as exc:  # anything else: what started was stopped; say what happened
            log.exception("start failed")
            print(f"firmware_sim.system: start failed ({type(exc).__name__}: {exc}); everything started was stopped",
                  file=sys.stderr)
            return 1
        StopSignals(stop, signals=("SIGINT", "SIGTERM")).install()  # never closed: the process ends with it
        print(json.dumps(system.demo, indent=2), flush=True)
        print(f"\nwrote {system.demo_path} (it holds the shared key: mode 600). Try it:", flush=True)
        for line in next_steps(system):
            print("  " + line, flush=True)
        exit_code = 0
        if args.console:
            from bridge import his_console

            print("\nHIS console (leave it with Ctrl-D or Ctrl-C: that stops everything):", flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the console's prompt handles Ctrl-C
            his_console.main(["--demo", str(system.demo_path)])
            stop.set()
        else:
            print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            dead = system.dead_children()
            if dead:
                print(f"firmware_sim.system: {dead[0].name} exited unexpectedly; see {dead[0].log_path}:\n"
                      f"{dead[0].log_tail()}", file=sys.stderr)
                exit_code = 1
                break
        statuses = system.stop()
        print(f"stopped: {', '.join(f'{name} (exit {code})' for name, code in statuses.items())}", flush=True)
        unclean = [name for name, code in statuses.items() if code not in (0, None)]
        if unclean and exit_code == 0:  # each stops cleanly on SIGTERM; one that did not is a defect to report
            print(f"firmware_sim.system: {', '.join(unclean)} did not stop cleanly; see {system.workdir / 'logs'}", file=sys.stderr)
            exit_code = 1
        return exit_code
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
