"""Every screen in both orientations and both languages: rendered offscreen to docs/screenshots/,
and checked: not blank, every character has a glyph in the font, nothing outside the window, no
clipped text, touch targets at least 48 dp."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from terminal.ui.fonts import coverage, prepare_fonts
from tests.terminal.ui.conftest import ROOT, finish

SHOTS = ROOT / "docs" / "screenshots"
SCREENS = ["home", "instruction_collect", "scan", "paying", "result_ok", "instruction_refund", "refund_pin", "result_fail",
           "history", "admin_pin", "settings"]
CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    from tests.terminal.ui.conftest import start_script

    tmp = tmp_path_factory.mktemp("screens")
    running = []
    for orientation in ("portrait", "landscape"):  # two processes side by side: one per window size
        report = tmp / f"{orientation}.json"
        running.append((start_script("tests.terminal.ui.render_screens",
                                     ["--out", str(SHOTS), "--report", str(report), "--orientation", orientation], tmp), report))
    return [finish(process, report) for process, report in running]


@pytest.fixture(scope="module")
def shots(reports: list[dict]) -> list[dict]:
    for report in reports:
        assert report["error"] is None, report["error"]
    return [shot for report in reports for shot in report["shots"]]


def test_every_screen_in_both_orientations_and_languages(shots: list[dict]) -> None:
    names = {shot["file"] for shot in shots}
    expected = {f"{s}_{o}_{lang}.png" for s in SCREENS for o in ("portrait", "landscape") for lang in ("zh", "en")}
    assert names == expected
    for name in expected:
        assert (SHOTS / name).is_file()


def test_screenshots_are_not_blank_and_have_the_window_size(shots: list[dict]) -> None:
    for shot in shots:
        image = Image.open(SHOTS / shot["file"])
        assert image.size == ((720, 1280) if shot["orientation"] == "portrait" else (800, 480)), shot["file"]
        assert ImageStat.Stat(image.convert("L")).var[0] > 200, f"{shot['file']} looks blank"


def test_nothing_outside_the_window_and_no_clipped_text(shots: list[dict]) -> None:
    problems = {shot["file"]: shot["problems"] for shot in shots if shot["problems"]}
    assert problems == {}


def test_touch_targets_are_at_least_48_dp(shots: list[dict]) -> None:
    small = {shot["file"]: shot["small_targets"] for shot in shots if shot["small_targets"]}
    assert small == {}


def test_every_character_on_screen_has_a_glyph(shots: list[dict]) -> None:
    fonts = prepare_fonts()
    regular, bold = coverage(fonts.regular_face), coverage(fonts.bold_face)
    seen_cjk = 0
    for shot in shots:
        for text in shot["texts"]:
            seen_cjk += len(CJK.findall(text))
            assert regular.missing(text) == [] and bold.missing(text) == [], f"{shot['file']}: {text!r}"
    assert seen_cjk > 500  # the Chinese screens really showed Chinese


def test_chinese_screens_show_chinese_and_english_screens_english(shots: list[dict]) -> None:
    for shot in shots:
        joined = " ".join(shot["texts"])
        if shot["lang"] == "zh":
            assert len(CJK.findall(joined)) > 5, shot["file"]
        else:
            assert re.search(r"[A-Za-z]{4,}", joined), shot["file"]
    home_en = next(s for s in shots if s["file"] == "home_portrait_en.png")
    assert "Waiting for the next order" in home_en["texts"]


def test_collect_and_refund_differ_in_word_and_colour(shots: list[dict]) -> None:
    collect = Image.open(SHOTS / "instruction_collect_portrait_zh.png").convert("RGB")
    refund = Image.open(SHOTS / "instruction_refund_portrait_zh.png").convert("RGB")

    def dominant_hue(image: Image.Image) -> tuple[int, int, int]:
        band = image.crop((0, 150, 720, 400))  # the badge and the amount
        colours = [c for n, c in band.getcolors(720 * 250) if max(c) - min(c) > 80]  # saturated pixels only
        return max(((n, c) for n, c in band.getcolors(720 * 250) if c in colours))[1]

    green, orange = dominant_hue(collect), dominant_hue(refund)
    assert green[1] > green[0] and orange[0] > orange[1]
    texts = {s["file"]: " ".join(s["texts"]) for s in shots}
    assert "收款" in texts["instruction_collect_portrait_zh.png"] and "退款" in texts["instruction_refund_portrait_zh.png"]
    assert "−¥36.80" in texts["instruction_refund_portrait_zh.png"]
