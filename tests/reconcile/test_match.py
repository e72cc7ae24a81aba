"""The matcher and its classes: each difference class from a small seeded case, and the accounting
invariant over random days: every fen of every side is in a matched outcome or in a difference."""

from __future__ import annotations

import datetime

from hypothesis import given
from hypothesis import strategies as st

from reconcile.match import Matcher, MatchResult
from reconcile.model import COLLECT, FLAG_ECHO, FLAG_LATE, REFUND, Carried, Channel, Columns, DiffClass, Reason, SideView, State, effect_of

W, A = int(Channel.WECHAT), int(Channel.ALIPAY)
M, N, P, R = int(State.MOVED), int(State.NOT_MOVED), int(State.PENDING), int(State.REVERSAL)
AT = 1795000000


def ours(i, order, d, fen, state, chan, pay, at=AT, flags=0):
    return (i, order, f"HIS-{i}", d, fen, state, chan, pay, "", at + i, flags)


def his(line, order, msg, d, fen, state, pay=""):
    return (line, order, msg, d, fen, state, 0, pay, "", "2026-11-22 10:00:00")


def bill(line, d, fen, chan, pay, state=M, ref="", at=AT):
    return (line, "P" + pay, "", d, fen, state, chan, pay, ref, at)


def run(o, h, c) -> MatchResult:
    m = Matcher("20261122")
    m.add_ours(Columns.from_rows(o), "journal.db")
    m.add_his([h], "his.csv")
    m.add_channel([c], "bill.csv")
    return m.finish()


def only(result: MatchResult):
    assert len(result.differences) == 1, result.differences
    return result.differences[0]


BASE_O = [ours(1, "MZ1", COLLECT, 10000, M, W, "T1")]
BASE_H = [his(2, "MZ1", "HIS-1", COLLECT, 10000, M)]
BASE_C = [bill(2, COLLECT, 10000, W, "T1")]


def test_a_day_where_everything_agrees_is_clean_including_partial_refunds_and_a_reversal():
    o = BASE_O + [ours(2, "MZ1", REFUND, 3000, M, W, "RF1"), ours(3, "MZ1", REFUND, 2000, M, W, "RF2"),
                  ours(4, "MZ4", COLLECT, 800, M, A, "AT4"), ours(5, "MZ4", REFUND, 300, M, A, "AT4"), ours(6, "MZ4", REFUND, 300, M, A, "AT4"),
                  ours(7, "MZ7", COLLECT, 500, N, W, "")]
    h = BASE_H + [his(3, "MZ1", "HIS-2", REFUND, 3000, M), his(4, "MZ1", "HIS-3", REFUND, 2000, M), his(5, "MZ4", "HIS-4", COLLECT, 800, M),
                  his(6, "MZ4", "HIS-5", REFUND, 300, M), his(7, "MZ4", "HIS-6", REFUND, 300, M), his(8, "MZ7", "HIS-7", COLLECT, 500, N)]
    c = BASE_C + [bill(3, REFUND, 2000, W, "RF2"), bill(4, REFUND, 3000, W, "RF1"), bill(5, COLLECT, 800, A, "AT4"),
                  bill(6, REFUND, 300, A, "AT4", ref="r2"), bill(7, REFUND, 300, A, "AT4", ref="r1"),
                  bill(8, COLLECT, 500, W, "T9", at=AT + 7), bill(9, COLLECT, 500, W, "T9", state=R, at=AT + 8)]
    result = run(o, h, c)
    assert result.differences == [] and result.matched == 8
    assert result.totals[Channel.WECHAT].chan.net == 10000 - 5000 and result.totals[Channel.ALIPAY].his.net == 200


def test_long_failed_write_back():
    d = only(run(BASE_O, [his(2, "MZ1", "HIS-1", COLLECT, 10000, P)], BASE_C))
    assert (d.cls, d.reason, d.position, d.order_no, d.msg_id) == (DiffClass.LONG, Reason.HIS_NOT_PAID, 10000, "MZ1", "HIS-1")


def test_long_his_has_no_row():
    d = only(run(BASE_O, [], BASE_C))
    assert (d.cls, d.reason, d.his) == (DiffClass.LONG, Reason.HIS_MISSING, None)


def test_long_the_pos_believes_it_failed_found_by_channel_amount_and_time():
    o = [ours(1, "MZ1", COLLECT, 10000, N, W, "")]
    d = only(run(o, [his(2, "MZ1", "HIS-1", COLLECT, 10000, N)], [bill(2, COLLECT, 10000, W, "T1", at=AT + 60)]))
    assert (d.cls, d.reason, d.msg_id, d.chan_effect) == (DiffClass.LONG, Reason.OURS_MISSED_PAYMENT, "HIS-1", 10000)


def test_short_amount_and_refund_on_one_side():
    assert only(run(BASE_O, BASE_H, [])).cls is DiffClass.SHORT
    d = only(run(BASE_O, [his(2, "MZ1", "HIS-1", COLLECT, 11000, M)], BASE_C))
    assert (d.cls, d.reason, d.position) == (DiffClass.AMOUNT, Reason.AMOUNT_HIS_CHANNEL, -1000)
    o = BASE_O + [ours(2, "MZ1", REFUND, 4000, M, W, "RF1")]
    d = only(run(o, BASE_H + [his(3, "MZ1", "HIS-2", REFUND, 4000, P)], BASE_C + [bill(3, REFUND, 4000, W, "RF1")]))
    assert (d.cls, d.reason, d.position) == (DiffClass.STATUS, Reason.REFUND_CHANNEL_ONLY, -4000)
    d = only(run(o, BASE_H + [his(3, "MZ1", "HIS-2", REFUND, 4000, M)], BASE_C))
    assert (d.cls, d.reason, d.position) == (DiffClass.STATUS, Reason.REFUND_HIS_ONLY, 4000)


def test_our_journal_disagreeing_with_his_and_the_channel():
    d = only(run([ours(1, "MZ1", COLLECT, 9000, M, W, "T1")], BASE_H, BASE_C))
    assert (d.cls, d.reason, d.position) == (DiffClass.AMOUNT, Reason.AMOUNT_OURS, 0)
    d = only(run([], [his(2, "MZ1", "HIS-1", COLLECT, 10000, M, pay="T1")], BASE_C))  # HIS and channel agree; that PC's journal is missing
    assert (d.cls, d.reason) == (DiffClass.STATUS, Reason.OURS_MISSING)
    d = only(run(BASE_O, [his(2, "MZ9", "HIS-1", COLLECT, 10000, M)], BASE_C))
    assert d.reason is Reason.MSG_ID_CONFLICT


def test_duplicates():
    d = only(run(BASE_O, BASE_H + [his(3, "MZ1", "HIS-1", COLLECT, 10000, M)], BASE_C))
    assert (d.cls, d.reason, d.position) == (DiffClass.DUPLICATE, Reason.DUPLICATE_HIS_ROW, -10000)
    d = only(run(BASE_O, BASE_H, BASE_C + [bill(3, COLLECT, 10000, W, "T1")]))
    assert (d.cls, d.reason, d.position) == (DiffClass.DUPLICATE, Reason.DUPLICATE_CHANNEL_ROW, 10000)
    o = BASE_O + [ours(2, "MZ1", COLLECT, 10000, M, W, "T1", flags=FLAG_ECHO)]
    d = only(run(o, BASE_H + [his(3, "MZ1", "HIS-2", COLLECT, 10000, M)], BASE_C))
    assert (d.cls, d.reason) == (DiffClass.DUPLICATE, Reason.DUPLICATE_ORDER_ECHO)
    d = only(run(BASE_O, BASE_H, BASE_C + [bill(3, COLLECT, 10000, W, "T2", at=AT + 30)]))
    assert (d.cls, d.reason, d.msg_id, d.position) == (DiffClass.DUPLICATE, Reason.SECOND_PAYMENT, "HIS-1", 10000)


def test_an_earlier_attempt_paid_and_reversed_is_nothing_held():
    c = BASE_C + [bill(3, COLLECT, 10000, W, "T0", at=AT - 20), bill(4, COLLECT, 10000, W, "T0", state=R, at=AT - 10)]
    assert run(BASE_O, BASE_H, c).differences == []


def test_a_his_ledger_without_msg_ids_is_matched_by_order_direction_and_amount():
    o = BASE_O + [ours(2, "MZ1", REFUND, 3000, M, W, "RF1"), ours(3, "MZ1", REFUND, 2000, M, W, "RF2")]
    h = [his(2, "MZ1", "", COLLECT, 10000, M), his(3, "MZ1", "", REFUND, 2000, M), his(4, "MZ1", "", REFUND, 3000, M)]
    c = BASE_C + [bill(3, REFUND, 3000, W, "RF1"), bill(4, REFUND, 2000, W, "RF2")]
    assert run(o, h, c).differences == []


def test_difference_ids_are_stable_and_unique():
    first = [d.diff_id for d in run(BASE_O, BASE_H + [his(3, "MZ1", "HIS-1", COLLECT, 10000, M)] * 2, []).differences]
    again = [d.diff_id for d in run(BASE_O, BASE_H + [his(3, "MZ1", "HIS-1", COLLECT, 10000, M)] * 2, []).differences]
    assert first == again and len(set(first)) == len(first) == 3


# -- the accounting invariant ---------------------------------------------------------------------

@st.composite
def days(draw):
    """Transactions with random disagreements: missing rows, other amounts, states, duplicates."""
    n = draw(st.integers(min_value=0, max_value=25))
    o, h, c = [], [], []
    for i in range(1, n + 1):
        d = draw(st.sampled_from((COLLECT, REFUND)))
        fen = draw(st.sampled_from((100, 250, 999, 10000)))
        chan = draw(st.sampled_from((W, A)))
        pay = draw(st.sampled_from((f"T{i}", f"T{i % 4}", "")))
        if draw(st.booleans()):
            o.append(ours(i, f"MZ{i % 5}", d, fen, draw(st.sampled_from((M, N, P))), chan, pay,
                          flags=draw(st.sampled_from((0, 0, 0, FLAG_ECHO, FLAG_LATE)))))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            msg = draw(st.sampled_from((f"HIS-{i}", "", f"HIS-{i + 1}")))
            h.append(his(len(h) + 2, f"MZ{i % 5}", msg, d, draw(st.sampled_from((fen, fen + 1))), draw(st.sampled_from((M, N, P))), pay))
        for _ in range(draw(st.integers(min_value=0, max_value=2))):
            c.append(bill(len(c) + 2, d, draw(st.sampled_from((fen, fen * 2))), chan, draw(st.sampled_from((pay or "X", f"T{i}"))),
                          state=draw(st.sampled_from((M, M, R))), ref=draw(st.sampled_from(("", "r1", "r2"))), at=AT + i + draw(st.integers(0, 2000))))
    return o, h, c


def _total(rows, offset=0):
    """A side's net; our records' replayed results and late results (a later day's) move nothing today."""
    return sum(effect_of(t[3], t[4], t[5]) if not (len(t) > 10 and t[10] & (FLAG_ECHO | FLAG_LATE)) else 0 for t in rows)


@given(days())
def test_every_fen_of_every_side_is_accounted_for(day):
    o, h, c = day
    result = run(o, h, c)
    totals = {side: sum(getattr(t, side).net for t in result.totals.values()) for side in ("his", "ours", "chan")}
    assert totals == {"his": _total(h), "ours": _total(o), "chan": _total(c)}
    # What is not in a difference is matched, and matched money is the same on all three sides.
    matched_his = totals["his"] - sum(d.his_effect for d in result.differences)
    matched_ours = totals["ours"] - sum(d.ours_effect for d in result.differences)
    matched_chan = totals["chan"] - sum(d.chan_effect for d in result.differences)
    assert matched_his == matched_ours == matched_chan
    assert sum(d.position for d in result.differences) == totals["chan"] - totals["his"]
    assert len({d.diff_id for d in result.differences}) == len(result.differences)
    for d in result.differences:
        assert d.cls is not DiffClass.MATCHED
        if d.cls is DiffClass.LONG:
            assert d.position > 0 and d.direction == COLLECT
        if d.cls is DiffClass.SHORT:
            assert d.position < 0 and d.direction == COLLECT


def test_a_difference_near_midnight_says_so():
    china = datetime.timezone(datetime.timedelta(hours=8))
    late = int(datetime.datetime(2026, 11, 22, 23, 57, 10, tzinfo=china).timestamp())

    def day_of(at: int) -> MatchResult:
        m = Matcher("20261122", format_time=lambda t: datetime.datetime.fromtimestamp(t, china).strftime("%Y-%m-%d %H:%M:%S"))
        m.add_ours(Columns.from_rows([ours(0, "MZ1", COLLECT, 10000, M, W, "T1", at=at)]), "journal.db")
        m.add_his([[his(2, "MZ1", "HIS-0", COLLECT, 10000, P)]], "his.csv")
        m.add_channel([BASE_C], "bill.csv")
        return m.finish()

    assert only(day_of(late)).near_midnight  # our result's time says it may be in the next day's bill
    assert not only(day_of(late - 3600)).near_midnight


def test_a_refund_whose_result_came_after_midnight_is_listed_not_open_and_carried():
    """Finding 7, in the matcher: accepted today, refunded after midnight. HIS and the bill have it
    today; our result belongs to tomorrow: nothing to resolve today, and tomorrow knows."""
    o = BASE_O + [ours(2, "MZ1", REFUND, 3000, M, W, "RF1", flags=FLAG_LATE)]
    result = run(o, BASE_H + [his(3, "MZ1", "HIS-2", REFUND, 3000, M)], BASE_C + [bill(3, REFUND, 3000, W, "RF1")])
    d = only(result)
    assert (d.cls, d.reason, d.his_effect, d.ours_effect, d.chan_effect) == (DiffClass.CROSS_DAY, Reason.RESULT_NEXT_DAY, -3000, 0, -3000)
    assert d.cls.informational
    assert sorted((c.msg_id, c.side, c.effect) for c in result.carried) == [("HIS-2", "channel", -3000), ("HIS-2", "his", -3000)]
    assert result.totals[Channel.WECHAT].ours.net == 10000  # our side counts it tomorrow
    # Tomorrow: our result, nothing in HIS or the bill of the day, but what the day before said.
    m = Matcher("20261123", carried=result.carried)
    m.add_ours(Columns.from_rows([ours(2, "MZ1", REFUND, 3000, M, W, "RF1")]), "journal.db")
    m.add_his([[]], "his.csv")
    m.add_channel([[]], "bill.csv")
    d = only(m.finish())
    assert (d.cls, d.reason, d.ours_effect) == (DiffClass.CROSS_DAY, Reason.SEEN_PREVIOUS_DAY, -3000)
    assert d.his is not None and d.his.where == "his.csv line 3" and d.chan is not None and d.chan.where == "bill.csv line 3"


def test_a_late_result_that_disagrees_with_his_is_a_difference_and_one_nobody_has_today_is_nothing():
    late_failed = [ours(2, "MZ1", REFUND, 3000, N, W, "", flags=FLAG_LATE)]  # the refund failed, after midnight
    d = only(run(BASE_O + late_failed, BASE_H + [his(3, "MZ1", "HIS-2", REFUND, 3000, M)], BASE_C))
    assert (d.cls, d.reason) == (DiffClass.STATUS, Reason.REFUND_HIS_ONLY)
    quiet = run(BASE_O + [ours(2, "MZ1", REFUND, 3000, M, W, "RF1", flags=FLAG_LATE)], BASE_H, BASE_C)
    assert quiet.differences == [] and quiet.matched == 1  # HIS sent it tomorrow in its books: not today's


def test_without_what_the_day_before_said_a_result_today_is_still_a_difference():
    carried = [Carried("2026-11-21", "HIS-9", "his", SideView("his.csv line 9 (2026-11-21)", 3000, State.MOVED), -3000)]
    m = Matcher("20261122", carried=carried)
    m.add_ours(Columns.from_rows(BASE_O + [ours(2, "MZ1", REFUND, 3000, M, W, "RF1")]), "journal.db")
    m.add_his([BASE_H], "his.csv")
    m.add_channel([BASE_C], "bill.csv")
    d = only(m.finish())  # HIS-2 was not carried (HIS-9 was): HIS never had this refund
    assert (d.cls, d.reason, d.msg_id) == (DiffClass.STATUS, Reason.OURS_DISAGREES, "HIS-2")
