"""Every button on every screen, in both orientations and both languages, answers a finger tapped at
its own position (a touch through the Window, see terminal/ui/offscreen.py), runs its action, and
is covered by no hidden or disabled widget. The taps are made by touch_run.py, in one process per
window size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from terminal.texts import STRINGS
from tests.terminal.ui.conftest import finish, start_script

ORIENTATIONS = ("portrait", "landscape")

# What each button does, by the catalogue key of its text (digits are their own text): the first
# view-model action its tap must run, and its first arguments. Every visible, enabled button must be
# listed here.
_PIN_PAD = {**{d: ["pin_key", d] for d in "0123456789"}, "btn.clear": ["pin_key", "clear"],
            "btn.delete": ["pin_key", "del"], "btn.ok": ["pin_submit"], "btn.back": ["back"]}
_HOME = {"home.history": ["open", "history"], "home.reprint": ["reprint_last"], "home.settings": ["open", "admin_pin"]}
_PAUSED = {"home.history": ["open", "history"], "home.settings": ["open", "admin_pin"]}  # no payment: no reprint either
EXPECTED: dict[str, dict[str, list[object]]] = {
    "home": _HOME,
    "home_needs_person": {**_HOME, "home.needs_person": ["open", "needs_person"]},  # issue 17: the count opens the list
    "instruction_collect": {"instr.camera": ["open", "camera_scan"], "btn.cancel": ["cancel"]},
    "instruction_declined": {"instr.camera": ["open", "camera_scan"], "btn.cancel": ["cancel"]},
    "scan": {"btn.back": ["back"], "btn.cancel": ["cancel"]},
    "paying": {"pay.cancel": ["cancel"]},
    "needs_person": {"np.recheck": ["recheck"], "btn.back": ["back"]},  # issue 17: no cancel while money may have moved
    "result_ok": {"result.print": ["print_receipt"], "btn.done": ["dismiss_result"]},
    "result_fail": {"btn.done": ["dismiss_result"]},  # no receipt for a failure (finding 4)
    "result_refund_fail": {"btn.done": ["dismiss_result"]},
    "result_expired": {"btn.done": ["dismiss_result"]},
    "result_withdrawn": {"btn.done": ["dismiss_result"]},
    "result_paid_elsewhere": {"btn.done": ["dismiss_result"]},  # no receipt: nothing was charged here
    "instruction_refund": {"instr.confirm_refund": ["open", "refund_pin"], "instr.decline_refund": ["decline_refund"]},
    "refund_pin": {**_PIN_PAD, "instr.decline_refund": ["decline_refund"]},
    "refund_locked": {**_PIN_PAD, "instr.decline_refund": ["decline_refund"],
                      "pin.unlock": ["open", "admin_pin", "reset_lockout"]},  # the admin clears the lockout
    "admin_pin_unlock": _PIN_PAD,
    "journal_locked": _PAUSED, "storage_unavailable": _PAUSED, "device_disabled": _PAUSED, "gateway_unreachable": _PAUSED,
    "history": {"history.search": ["search_history"], "btn.back": ["back"]},
    "admin_pin": _PIN_PAD,
    "admin_pin_unset": {"btn.back": ["back"]},  # no keypad: no admin PIN could be right
    "settings": {"settings.lang.zh": ["set_language", "zh"], "settings.lang.en": ["set_language", "en"],
                 "btn.back": ["back"]},
}


def catalogue_key(text: str, lang: str, candidates: dict[str, list[object]]) -> str | None:
    if text in candidates:
        return text
    keys = [k for k in candidates if k in STRINGS and (STRINGS[k].en if lang == "en" else STRINGS[k].zh) == text]
    # an entry with fields ("{n} payments need a person") matches its text with the fields filled in
    keys += [k for k in candidates if k in STRINGS and "{" in STRINGS[k].zh and re.fullmatch(
        re.sub(r"\\{\w+\\}", ".+", re.escape(STRINGS[k].en if lang == "en" else STRINGS[k].zh)), text)]
    return keys[0] if keys else None


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("touch")
    running = {o: (start_script("tests.terminal.ui.touch_run", ["--orientation", o, "--report", str(tmp / f"{o}.json")], tmp),
                   tmp / f"{o}.json") for o in ORIENTATIONS}
    done = {o: finish(process, report) for o, (process, report) in running.items()}
    for o, report in done.items():
        assert report["error"] is None, f"{o}: {report['error']}"
    return done


def buttons(reports: dict[str, dict]):
    for orientation, report in reports.items():
        for state in report["states"]:
            for button in state["buttons"]:
                yield f"{state['state']} {orientation} {state['lang']} {button['text']!r}", state, button


def test_the_finger_cannot_tap_through_a_disabled_widget(reports: dict[str, dict]) -> None:
    """The helper itself: a tap on a button under a disabled widget is swallowed, and said so."""
    for orientation, report in reports.items():
        check = report["self_check"]
        assert check["covering"] == ["Widget"], orientation
        assert check["covered_tap"].startswith("missed:") and "on top of it: Widget" in check["covered_tap"], check
        assert check["uncovered_tap"] == "reached", check


def test_the_collect_screen_answers_a_finger(reports: dict[str, dict]) -> None:
    """Finding 1: 取消收款 and 摄像头扫码 ignored taps, because the hidden, disabled refund row lay on
    top of them and Kivy lets a disabled widget swallow a touch."""
    seen = 0
    for where, state, button in buttons(reports):
        if state["state"] != "instruction_collect":
            continue
        key = catalogue_key(button["text"], state["lang"], EXPECTED["instruction_collect"])
        assert button["reached"], f"{where}: {button.get('missed')}"
        assert button["actions"][:1] == [EXPECTED["instruction_collect"][key]], f"{where}: {button['actions']}"  # exactly
        seen += 1
    assert seen == 2 * 2 * 2  # two buttons, two orientations, two languages


def test_no_hidden_or_disabled_widget_covers_a_button(reports: dict[str, dict]) -> None:
    covered = {where: button["covering"] for where, state, button in buttons(reports) if button["covering"]}
    assert covered == {}


def test_every_button_answers_a_tap_at_its_own_position(reports: dict[str, dict]) -> None:
    problems = []
    count = 0
    for where, state, button in buttons(reports):
        count += 1
        expected = EXPECTED[state["state"]]
        key = catalogue_key(button["text"], state["lang"], expected)
        if key is None:
            problems.append(f"{where}: a button this test does not know; add it to EXPECTED")
        elif not button["reached"]:
            problems.append(f"{where}: {button['missed']}")
        elif button["released"] != [f"{button['released'][0].split(' ')[0]} {button['text']!r}"] or len(button["released"]) != 1:
            problems.append(f"{where}: released {button['released']}")
        elif not button["actions"] or button["actions"][0][:len(expected[key])] != expected[key]:
            problems.append(f"{where}: ran {button['actions']}, expected {expected[key]}")
    assert problems == []
    assert count > 150  # both orientations and languages, every screen


def test_every_expected_button_is_on_its_screen(reports: dict[str, dict]) -> None:
    for orientation, report in reports.items():
        for state in report["states"]:
            shown = {catalogue_key(b["text"], state["lang"], EXPECTED[state["state"]]) for b in state["buttons"]}
            assert shown == set(EXPECTED[state["state"]]), f"{state['state']} {orientation} {state['lang']}"
