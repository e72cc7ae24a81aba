"""The running simulator's state file, `<storage>/sim.json`: its one writer and its readers.

`pos-sim run` (firmware_sim.simrun) writes it when the device is up and removes it when it stops;
the cashier commands (firmware_sim.cli) read it to find the control API. Both import this module,
not each other.
"""

from __future__ import annotations

import json
from pathlib import Path

from firmware_sim.simerrors import SimCode, SimError
from local_storage.atomic_file import write_atomically

STATE_FILE = "sim.json"


def write_state(storage: Path, state: dict[str, object]) -> None:
    """Replace the state file in one step (a reader never sees half of it)."""
    write_atomically(storage / STATE_FILE, json.dumps(state, indent=2) + "\n")


def remove_state(storage: Path) -> None:
    (storage / STATE_FILE).unlink(missing_ok=True)


def read_state(storage: Path) -> dict[str, object]:
    """The state file a running `pos-sim run` keeps in its storage directory."""
    path = storage / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SimError(SimCode.NOT_RUNNING, f"no simulator runs on {storage} ({path} is missing); start one with "
                       f"`pos-sim run --storage {storage}` or `make run HEADLESS=1`") from None
    except (OSError, ValueError) as exc:
        raise SimError(SimCode.NOT_RUNNING, f"{path} is unreadable ({exc}); is the simulator still starting?") from None
    if not isinstance(state, dict) or not isinstance(state.get("control_url"), str):
        raise SimError(SimCode.NOT_RUNNING, f"{path} names no control_url")
    return state
