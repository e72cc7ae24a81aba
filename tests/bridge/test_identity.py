"""The bridge's link identity key: made private by init, refused when others can read it, pinned by the POS."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bridge import cli
from bridge.config import parse_config
from bridge.daemon import Bridge
from bridge.keystore import IDENTITY_FILE, KeyStoreError, load_identity, new_identity
from protocol.link.handshake import HostRole
from protocol.link.hostkeys import parse_public

from tests.bridge.conftest import World

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@posix_only
def test_init_makes_the_identity_private_and_its_public_half_pinnable(tmp_path: Path, capsys) -> None:
    assert cli.main(["init", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    key_path = tmp_path / "b" / IDENTITY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "b" / "keys.json").stat().st_mode) == 0o600
    public = parse_public((tmp_path / "b" / "bridge_identity.pub").read_text())
    key = load_identity(key_path)
    assert public.role is HostRole.BRIDGE and public.public == key.public
    assert public.fingerprint in out and key.seed.hex() not in out
    assert key.seed.hex() not in (tmp_path / "b" / "bridge_identity.pub").read_text()


def test_identity_is_never_overwritten(tmp_path: Path) -> None:
    new_identity(tmp_path / IDENTITY_FILE, "b1")
    with pytest.raises(KeyStoreError, match="keeps its identity"):
        new_identity(tmp_path / IDENTITY_FILE, "b2")


@posix_only
def test_the_bridge_refuses_to_start_on_an_identity_others_can_read(world: World) -> None:
    (world.dir / IDENTITY_FILE).chmod(0o644)
    config = parse_config(world.config(["socket://127.0.0.1:9"]), base_dir=world.dir)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        Bridge(config)


def test_the_bridge_refuses_to_start_without_an_identity(world: World) -> None:
    (world.dir / IDENTITY_FILE).unlink()
    config = parse_config(world.config(["socket://127.0.0.1:9"]), base_dir=world.dir)
    with pytest.raises(KeyStoreError, match="his-bridge identity new"):
        Bridge(config)


def test_identity_new_and_show(world: World, capsys) -> None:
    path = world.write_config(["socket://127.0.0.1:9"])
    assert cli.main(["--config", str(path), "identity", "show"]) == 0
    assert load_identity(world.dir / IDENTITY_FILE).public_key().fingerprint in capsys.readouterr().out
    assert cli.main(["--config", str(path), "identity", "new"]) == 1  # init already made one
    (world.dir / IDENTITY_FILE).unlink()
    assert cli.main(["--config", str(path), "identity", "new", "--name", "cashier-pc-2"]) == 0
    assert load_identity(world.dir / IDENTITY_FILE).name == "cashier-pc-2"
