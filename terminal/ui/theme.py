"""Colours and sizes of the POS screens, in one place (the .kv files import this as `C`).

Collection and refund differ in colour AND word AND marker (+ in a green disc, − in an orange
square), so a colour-blind cashier or a washed-out screen in sunlight still tells them apart.
Sizes are fractions of the window's short side (`app.u` = 1 % of it) so one layout serves
720x1280 portrait and 800x480 landscape at any pixel density; touch targets never go below 48 dp.
"""

BG = (0.95, 0.96, 0.97, 1)
CARD = (1, 1, 1, 1)
INK = (0.11, 0.14, 0.19, 1)
MUTED = (0.38, 0.42, 0.49, 1)
LINE = (0.82, 0.85, 0.89, 1)
BAR = (0.13, 0.20, 0.31, 1)
BAR_INK = (1, 1, 1, 1)
COLLECT = (0.06, 0.50, 0.24, 1)  # green: money comes in
COLLECT_SOFT = (0.88, 0.96, 0.90, 1)
REFUND = (0.82, 0.27, 0.04, 1)  # orange-red: money goes back
REFUND_SOFT = (0.99, 0.91, 0.86, 1)
OK = (0.06, 0.50, 0.24, 1)
FAIL = (0.76, 0.11, 0.11, 1)
WARN = (0.70, 0.33, 0.0, 1)
PRIMARY = (0.09, 0.36, 0.72, 1)
SECONDARY = (0.40, 0.45, 0.52, 1)
DANGER = (0.76, 0.11, 0.11, 1)
DISABLED = (0.70, 0.72, 0.75, 1)
CHIP_OK = (0.06, 0.50, 0.24, 1)
CHIP_BAD = (0.76, 0.11, 0.11, 1)
CHIP_UNKNOWN = (0.45, 0.49, 0.55, 1)
# An amount that did NOT move (failed, closed, refused): neutral grey, never a direction's colour,
# so a glance at a failed collection cannot read "paid" from a big green number.
AMOUNT_NOT_MOVED = (0.45, 0.48, 0.53, 1)
# Scroll bars stay visible (not only while moving): the cashier must see that a list goes on.
SCROLL_BAR = (0.38, 0.42, 0.49, 0.85)
SCROLL_BAR_IDLE = (0.38, 0.42, 0.49, 0.55)

# The test-environment banner: amber, like a warning sign, with ink text.
TEST_BANNER = (1.0, 0.80, 0.22, 1)

MIN_TOUCH_DP = 48


def direction_colour(direction: str) -> tuple[float, float, float, float]:
    return REFUND if direction == "refund" else COLLECT


def amount_colour(direction: str, moved: bool = True) -> tuple[float, float, float, float]:
    """The amount's colour: its direction's while the money moves or has moved, grey when it did not."""
    return direction_colour(direction) if moved else AMOUNT_NOT_MOVED


def direction_soft(direction: str) -> tuple[float, float, float, float]:
    return REFUND_SOFT if direction == "refund" else COLLECT_SOFT


def chip_colour(state: str) -> tuple[float, float, float, float]:
    return CHIP_OK if state in ("up", "reachable") else CHIP_BAD if state in ("down", "unreachable", "disabled") else CHIP_UNKNOWN
