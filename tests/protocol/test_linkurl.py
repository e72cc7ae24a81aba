"""The one link URL grammar both ends of the cable read (protocol.linkurl)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.linkurl import AoaTarget, LinkUrlError, Scheme, parse_link_url


@pytest.mark.parametrize("url, fields", [
    ("serial:COM3", {"scheme": Scheme.SERIAL, "port_name": "COM3"}),
    ("serial:/dev/ttyGS0", {"scheme": Scheme.SERIAL, "port_name": "/dev/ttyGS0"}),
    ("socket://127.0.0.1:7001", {"scheme": Scheme.SOCKET, "host": "127.0.0.1", "port": 7001}),
    ("socket://[::1]:7001", {"scheme": Scheme.SOCKET, "host": "::1", "port": 7001}),
    ("usb://1209:7D01/PS-0001", {"scheme": Scheme.USB, "vid": 0x1209, "pid": 0x7D01, "serial_no": "PS-0001"}),
    ("usb://1209:7d02", {"scheme": Scheme.USB, "vid": 0x1209, "pid": 0x7D02, "serial_no": None}),
    ("auto", {"scheme": Scheme.AUTO, "vid": 0x1209, "pid": 0x7D01}),
    ("auto:2BC5:0001", {"scheme": Scheme.AUTO, "vid": 0x2BC5, "pid": 0x0001}),
    ("aoa", {"scheme": Scheme.AOA, "aoa_targets": ()}),
    ("aoa://2A45:0C02", {"scheme": Scheme.AOA, "aoa_targets": (AoaTarget(0x2A45, 0x0C02),)}),
    ("aoa://2A45:0C02/SN1,*/SN2", {"scheme": Scheme.AOA,
                                   "aoa_targets": (AoaTarget(0x2A45, 0x0C02, "SN1"), AoaTarget(None, None, "SN2"))}),
    ("auto?aoa=2A45:0C02", {"scheme": Scheme.AUTO, "vid": 0x1209, "aoa_targets": (AoaTarget(0x2A45, 0x0C02),)}),
    ("auto:2BC5:0001?aoa=*/PS9", {"scheme": Scheme.AUTO, "vid": 0x2BC5, "aoa_targets": (AoaTarget(None, None, "PS9"),)}),
])
def test_each_form_reads_as_written(url, fields):
    link = parse_link_url(url)
    assert link.text == url
    for name, value in fields.items():
        assert getattr(link, name) == value


@pytest.mark.parametrize("url, fragment", [
    ("", "empty link URL"),
    ("COM3", "unknown link URL 'COM3'"),
    ("tcp://127.0.0.1:7001", "unknown link URL"),  # the device's old dialect is not a second grammar
    ("serial:", "name the port"),
    ("socket://127.0.0.1", "socket://HOST:PORT"),
    ("socket://127.0.0.1:70000", "socket://HOST:PORT"),
    ("usb://12:7D01", "4-digit hex"),
    ("auto:1209", "4-digit hex"),
    ("aoa://", "name the Android POS"),
    ("aoa://*", "never switches whatever is plugged in"),
    ("aoa://*/", "empty or malformed serial number"),
    ("aoa://2A45", "is not an Android POS"),
    ("aoa://2A45:0C02,2A45:0C02", "names a target twice"),
    ("auto?aoa=", "the only option of auto"),
    ("auto?serial=1", "the only option of auto"),
    ("auto?aoa=*", "never switches"),
])
def test_bad_urls_say_what_is_wrong(url, fragment):
    with pytest.raises(LinkUrlError) as info:
        parse_link_url(url)
    assert fragment in str(info.value)


def test_the_setting_is_named_as_the_caller_names_it():
    with pytest.raises(LinkUrlError, match="unknown transport URL 'x'"):
        parse_link_url("x", what="transport URL")


@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_cleanly(text):
    try:
        link = parse_link_url(text)
    except LinkUrlError:
        return
    assert link.text == text


@given(st.integers(1, 65535), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_numbers_survive_the_text(port, vid, pid):
    assert parse_link_url(f"socket://10.0.0.1:{port}").port == port
    link = parse_link_url(f"usb://{vid:04X}:{pid:04X}")
    assert (link.vid, link.pid) == (vid, pid)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
                          st.one_of(st.none(), st.text("ABCDEFXYZ0123456789-_", min_size=1, max_size=12))),
                min_size=1, max_size=4, unique=True))
def test_aoa_targets_survive_the_text(items):
    targets = tuple(AoaTarget(vid, pid, serial) for vid, pid, serial in items)
    text = ",".join(str(t) for t in targets)
    assert parse_link_url(f"aoa://{text}").aoa_targets == targets
    assert parse_link_url(f"auto?aoa={text}").aoa_targets == targets
