"""Every screen in both orientations and both languages, rendered offscreen into a temporary folder
by the same command that makes docs/screenshots/ (python -m terminal.ui.screenshots), and checked:
not blank, every character has a glyph in the font, nothing outside the window, no clipped text,
touch targets at least 48 dp; fixed data at a fixed moment, so every run draws the same pixels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from terminal.ui import screenshots
from terminal.ui.fonts import coverage, prepare_fonts
from tests.terminal.ui.conftest import ROOT

DOCS = ROOT / "docs" / "screenshots"
CJK = re.compile(r"[\u3400-\u9fff]")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    tmp = tmp_path_factory.mktemp("screens")
    result = screenshots.render_all(tmp / "png", log_dir=tmp)
    assert result["errors"] == []
    return tmp / "png", result["shots"]


@pytest.fixture(scope="module")
def shots(rendered: tuple[Path, list[dict]]) -> list[dict]:
    return rendered[1]


@pytest.fixture(scope="module")
def shot_dir(rendered: tuple[Path, list[dict]]) -> Path:
    return rendered[0]


def test_every_screen_in_both_orientations_and_languages(shots: list[dict], shot_dir: Path) -> None:
    assert {shot["file"] for shot in shots} == screenshots.screen_files()
    assert {p.name for p in shot_dir.iterdir()} == screenshots.expected_files()  # and the contact sheets


def test_the_docs_hold_the_same_set_of_screenshots() -> None:
    """The docs copies come from `python -m terminal.ui.screenshots --out docs/screenshots`; a screen
    added or renamed without regenerating them shows up here."""
    assert {p.name for p in DOCS.glob("*.png")} == screenshots.expected_files()


def test_the_paying_countdown_is_frozen_for_the_pictures(shots: list[dict]) -> None:
    paying = next(s for s in shots if s["file"] == "paying_portrait_en.png")
    assert any("25" in text for text in paying["texts"]), paying["texts"]


def test_screenshots_are_not_blank_and_have_the_window_size(shots: list[dict], shot_dir: Path) -> None:
    for shot in shots:
        image = Image.open(shot_dir / shot["file"])
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


def test_collect_and_refund_differ_in_word_and_colour(shots: list[dict], shot_dir: Path) -> None:
    collect = Image.open(shot_dir / "instruction_collect_portrait_zh.png").convert("RGB")
    refund = Image.open(shot_dir / "instruction_refund_portrait_zh.png").convert("RGB")

    def dominant_hue(image: Image.Image) -> tuple[int, int, int]:
        band = image.crop((0, 150, 720, 400))  # the badge and the amount
        colours = [c for n, c in band.getcolors(720 * 250) if max(c) - min(c) > 80]  # saturated pixels only
        return max(((n, c) for n, c in band.getcolors(720 * 250) if c in colours))[1]

    green, orange = dominant_hue(collect), dominant_hue(refund)
    assert green[1] > green[0] and orange[0] > orange[1]
    texts = {s["file"]: " ".join(s["texts"]) for s in shots}
    assert "收款" in texts["instruction_collect_portrait_zh.png"] and "退款" in texts["instruction_refund_portrait_zh.png"]
    assert "−¥36.80" in texts["instruction_refund_portrait_zh.png"]


def _pixels_near(image: Image.Image, colour: tuple[float, ...], top: int, tolerance: int = 40) -> int:
    """How many pixels below the top bar (its link chip is green too) are close to `colour`."""
    rgb = tuple(round(c * 255) for c in colour[:3])
    body = image.convert("RGB").crop((0, top, image.width, image.height))
    return sum(n for n, c in body.getcolors(body.width * body.height) if sum(abs(a - b) for a, b in zip(c, rgb)) < tolerance)


def test_an_amount_that_did_not_move_is_grey_not_the_direction_colour(shots: list[dict], shot_dir: Path) -> None:
    """A failed collection must not show a big green number (a glance would read "paid"), nor a
    failed refund a big orange one; a successful collection does show its green."""
    from terminal.ui import theme

    for orientation, bar in (("portrait", 80), ("landscape", 56)):
        for lang in ("zh", "en"):
            def image(name: str) -> Image.Image:
                return Image.open(shot_dir / screenshots.file_name(name, orientation, lang))

            assert _pixels_near(image("result_fail"), theme.COLLECT, bar) < 50
            assert _pixels_near(image("result_refund_fail"), theme.REFUND, bar) < 50
            assert _pixels_near(image("result_fail"), theme.AMOUNT_NOT_MOVED, bar) > 2000
            assert _pixels_near(image("result_refund_fail"), theme.AMOUNT_NOT_MOVED, bar) > 1000
            assert _pixels_near(image("result_ok"), theme.COLLECT, bar) > 2000
    texts = {s["file"]: " ".join(s["texts"]) for s in shots}
    assert "未退款" in texts["result_refund_fail_portrait_zh.png"] and "−¥36.80" in texts["result_refund_fail_portrait_zh.png"]
