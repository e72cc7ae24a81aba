"""The Android packaging inputs (terminal/android/) name exactly what the bridge sends when it switches
a POS to accessory mode: otherwise Android would never start the app for it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from protocol.aoa import BRIDGE_ACCESSORY

ANDROID = Path(__file__).resolve().parents[3] / "terminal" / "android"
ANDROID_NS = "{http://schemas.android.com/apk/res/android}"


def test_the_accessory_filter_matches_the_bridge() -> None:
    (accessory,) = ET.parse(ANDROID / "accessory_filter.xml").getroot().iter("usb-accessory")
    assert accessory.attrib == {"manufacturer": BRIDGE_ACCESSORY.manufacturer, "model": BRIDGE_ACCESSORY.model,
                                "version": BRIDGE_ACCESSORY.version}


def test_the_activity_is_started_by_the_accessory_with_that_filter() -> None:
    text = (ANDROID / "intent_filters.xml").read_text(encoding="utf-8")
    root = ET.fromstring(f'<activity xmlns:android="{ANDROID_NS[1:-1]}">{text}</activity>')
    actions = [a.get(ANDROID_NS + "name") for a in root.iter("action")]
    assert actions == ["android.hardware.usb.action.USB_ACCESSORY_ATTACHED"]
    (meta,) = root.iter("meta-data")
    assert meta.get(ANDROID_NS + "resource") == "@xml/accessory_filter"


def test_the_docs_show_the_same_filter() -> None:
    docs = (ANDROID.parents[1] / "docs" / "pos-app.md").read_text(encoding="utf-8")
    assert (ANDROID / "accessory_filter.xml").read_text(encoding="utf-8").split("-->", 1)[1].strip() in docs
