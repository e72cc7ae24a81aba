"""Configuration: defaults, every refusal names its setting, and no input crashes validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.config import SECTIONS, BridgeConfigError, load_config, parse_config
from bridge.initdir import EXAMPLE_CONFIG


def test_an_empty_file_is_a_loopback_bridge_with_documented_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8765)
    assert config.security.key_file == tmp_path / "keys.json"
    assert config.security.amount_limit_fen == 50_000_00
    assert config.link.ports == ("auto",) and config.link.timers.byte_rate == 11520.0
    assert config.journal.synchronous == "FULL"


def test_the_example_config_written_by_init_is_valid_and_documents_every_setting(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(EXAMPLE_CONFIG, encoding="utf-8")
    load_config(tmp_path / "config.toml")
    docs = (Path(__file__).resolve().parents[2] / "docs" / "bridge.md").read_text(encoding="utf-8")
    for section, keys in SECTIONS.items():
        for key in keys:
            if key == "timers":
                continue
            assert re.search(rf"^{key} = ", EXAMPLE_CONFIG, re.M), key
            assert f"`{key}`" in docs, f"docs/bridge.md does not document [{section}] {key}"


@pytest.mark.parametrize("toml, message", [
    ("[http]\nport = 99999", "config.toml: [http] port = 99999 is not a port (1-65535)"),
    ("[http]\nport = \"8765\"", "[http] port = \"8765\" is not a port"),
    ("[http]\nprot = 1", "[http] prot is not a setting; did you mean port?"),
    ("[htp]\nport = 1", "[htp] is not a section; did you mean [http]?"),
    ("[http]\nhost = \"10.1.1.1\"", "[http] host = \"10.1.1.1\" is not a loopback address"),
    ("[http]\nhost = \"0.0.0.0\"\nallow_clients = [\"10.1.1.0/24\"]", "listens on every interface"),
    ("[http]\nallow_clients = [\"his-server\"]", "not an IP address or network"),
    ("[security]\namount_limit = \"12.5\"", "[security] amount_limit = \"12.5\" is not an amount in yuan"),
    ("[security]\namount_limit = 100", "[security] amount_limit = 100 is not a string"),
    ("[security]\nanswer_ttl_s = 60", "at least 24 h"),
    ("[security]\nkey_file = \"\"", "[security] key_file = \"\" is empty"),
    ("[journal]\nsynchronous = \"OFF\"", "must be one of FULL, NORMAL"),
    ("[link]\nports = []", "[link] ports = [] is empty"),
    ("[link]\nports = [\"COM3\"]", "holds a bad URL: unknown transport URL 'COM3'"),
    ("[link]\nports = [\"serial:COM3\", \"serial:COM3\"]", "names a port twice"),
    ("[link]\nbaud = 0", "[link] baud = 0 is not a baud rate"),
    ("[link]\nreconnect_min_s = 5\nreconnect_max_s = 1", "is below reconnect_min_s"),
    ("[link.timers]\nkeepalive_s = 5\ndead_after_s = 2", "must be longer than keepalive_s"),
    ("[link.timers]\nwindow = 0", "[link.timers] window = 0 is not a number of frames"),
    ("[link.timers]\nrto_base_s = nan", "[link.timers] rto_base_s = nan is not a number of seconds"),
    ("[log]\nlevel = \"LOUD\"", "[log] level = \"LOUD\" must be one of"),
    ("[http]\nport = ", "is not valid TOML"),
])
def test_bad_settings_stop_the_start_with_a_message_naming_them(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(BridgeConfigError) as error:
        load_config(tmp_path / "config.toml")
    assert message in str(error.value)


def test_a_non_loopback_address_needs_an_allowlist(tmp_path: Path) -> None:
    config = parse_config({"http": {"host": "10.1.1.1", "allow_clients": ["10.1.2.0/24"]}}, base_dir=tmp_path)
    assert config.http.allow_clients == ("10.1.2.0/24",)


VALUES = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=12), st.booleans(),
                   st.lists(st.text(max_size=8), max_size=3), st.none().map(lambda _: {}))


@given(st.dictionaries(st.sampled_from([s for s in SECTIONS if "." not in s] + ["bogus"]),
                       st.dictionaries(st.sampled_from(sorted({k for ks in SECTIONS.values() for k in ks} | {"x"})),
                                       VALUES, max_size=4), max_size=4))
def test_any_input_is_either_a_config_or_a_config_error_naming_the_setting(data: dict[str, object]) -> None:
    try:
        parse_config(data, base_dir=Path("/tmp"))
    except BridgeConfigError as error:
        assert str(error).startswith("config.toml: [")


def test_the_limit_comes_from_the_hospitals_limits_file(tmp_path: Path) -> None:
    """Issue 11 item 2: the bridge's limit is the hospital's, from the file the gateway exports."""
    (tmp_path / "limits.json").write_text('{"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "2000.00"}')
    (tmp_path / "config.toml").write_text('[security]\nlimits_file = "limits.json"\n', encoding="utf-8")
    assert load_config(tmp_path / "config.toml").security.amount_limit_fen == 2000_00


@pytest.mark.parametrize("toml, limits, message", [
    ('limits_file = "limits.json"\namount_limit = "2000.00"', None, "amount_limit = \"2000.00\" is set as well as limits_file"),
    ('limits_file = "none.json"', None, "limits_file = \"none.json\" cannot be read"),
    ('limits_file = "limits.json"', '{"format": "hospital-limits-v1", "hospital_id": "H001", "per_transaction": "2000"}',
     "is not a hospital-limits-v1 file: limits.json: per_transaction"),
])
def test_a_bad_limits_file_is_named(tmp_path: Path, toml: str, limits: str | None, message: str) -> None:
    if limits is not None:
        (tmp_path / "limits.json").write_text(limits)
    (tmp_path / "config.toml").write_text(f"[security]\n{toml}\n", encoding="utf-8")
    with pytest.raises(BridgeConfigError) as info:
        load_config(tmp_path / "config.toml")
    assert message in str(info.value)
