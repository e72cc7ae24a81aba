"""The finance staff's outputs: the differences CSV and a self-contained HTML report.

Both are written to a temporary file beside the target and renamed over it (`os.replace`), so a
reader never sees half a report and a failed run leaves the previous one in place. The CSV is
UTF-8 with a BOM (Excel on Chinese Windows then reads it right); text a spreadsheet could take as
a formula is prefixed with an apostrophe. The HTML has no external CSS, JS or fonts: the chart is
inline SVG, so the file can be mailed or archived as it is.
"""

from __future__ import annotations

import csv
import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from reconcile.match import ChannelTotals, MatchResult
from reconcile.model import DIFF_CLASSES, Channel, DiffClass, SideView
from reconcile.store import Resolution
from protocol.amount import format_yuan
from reconcile.texts import DOC, advice, explain, resolve_hint, signed_yuan

HTML_ROWS = 2000  # beyond this the table says "see the CSV": a browser chokes on a million rows

CSV_HEADER = (
    "diff_id", "class", "class_label", "reason", "channel", "direction", "order_no", "msg_id", "pay_order_no",
    "his_amount", "his_state", "his_where", "ours_amount", "ours_state", "ours_where",
    "channel_amount", "channel_state", "channel_where", "position", "near_midnight",
    "explanation", "action", "command", "resolved", "resolved_at", "resolved_by", "note",
    "platform_amount", "platform_state", "platform_where",  # the gateway's ledger, when given (last: older readers keep their columns)
)


@dataclass(frozen=True, slots=True)
class ReportContext:
    day: str  # "2026-11-22"
    generated_at: str
    inputs: list[tuple[str, str]]  # (role, file)
    result: MatchResult
    resolutions: dict[str, Resolution]
    terminals: dict[str, str] = field(default_factory=dict)  # msg_id -> cashier window, for refund commands


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_temp(path: Path, write: Callable[[TextIO], None], *, bom: bool = False) -> Path:
    """Write to the temporary sibling of `path`, synced to disk; the caller renames it."""
    tmp = temp_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _side(v: SideView | None, direction: int) -> tuple[str, str, str]:
    if v is None:
        return "", "", ""
    return signed_yuan(direction * v.fen), v.state.name, v.where


def write_csv(f: TextIO, ctx: ReportContext) -> None:
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(CSV_HEADER)
    for d in ctx.result.differences:
        r = ctx.resolutions.get(d.diff_id)
        action, command = advice(d, ctx.terminals.get(d.msg_id))
        w.writerow((
            d.diff_id, d.cls.value, d.cls.label, d.reason.value, d.channel.name, "+" if d.direction > 0 else "-",
            d.order_no, d.msg_id, d.pay_order_no,
            *_side(d.his, d.direction), *_side(d.ours, d.direction), *_side(d.chan, d.direction),
            signed_yuan(d.position), "yes" if d.near_midnight else "", explain(d), _cell(action), _cell(command or ""),
            "yes" if r else "no action" if d.cls.informational else "no", r.resolved_at if r else "", _cell(r.resolved_by) if r else "", _cell(r.note) if r else "",
            *_side(d.plat, d.direction),
        ))


OTHERS_HEADER = ("channel", "where", "out_trade_no", "pay_order_no", "direction", "amount", "state", "at", "trade_type", "device", "why")


def write_others_csv(f: TextIO, ctx: ReportContext) -> None:
    """The bill rows that are not the POS's trades (reconcile.attribution): for the reconciliation
    of the system that made them, and to tie the bill's total."""
    w = csv.writer(f, lineterminator="\r\n")
    w.writerow(OTHERS_HEADER)
    for o in ctx.result.others:
        w.writerow((o.channel.name, o.where, _cell(o.out_trade_no), _cell(o.pay_order_no), "+" if o.direction > 0 else "-",
                    format_yuan(o.fen), o.state.name, o.at, _cell(o.trade_type), _cell(o.device), o.why))


# ----------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6b7c;font-size:13px}.banner{padding:12px 16px;border-radius:6px;font-size:16px;margin:16px 0}
.clean{background:#e5f6ea;border:1px solid #7cc79a}.dirty{background:#fdf0e0;border:1px solid #e0a050}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{border:1px solid #d5dce4;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.resolved td{color:#7a8794;background:#f7f9fb}code{font-family:Consolas,monospace;background:#f3f3f3;padding:1px 4px;word-break:break-all}
.tag{display:inline-block;padding:1px 6px;border-radius:3px;font-size:12px;color:#fff}
.long{background:#c0392b}.short{background:#8e44ad}.amount_mismatch{background:#d35400}.status_mismatch{background:#2874a6}.duplicate{background:#616a6b}.matched{background:#1e8449}.cross_day{background:#7d8c99}
.ok{color:#1e8449}.bad{color:#c0392b;font-weight:bold}
"""
_COLORS = {DiffClass.MATCHED: "#1e8449", DiffClass.LONG: "#c0392b", DiffClass.SHORT: "#8e44ad", DiffClass.AMOUNT: "#d35400",
           DiffClass.STATUS: "#2874a6", DiffClass.DUPLICATE: "#616a6b", DiffClass.CROSS_DAY: "#7d8c99"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def write_html(f: TextIO, ctx: ReportContext) -> None:
    res = ctx.result
    counts = res.class_counts()
    open_ids = [d.diff_id for d in res.differences if d.diff_id not in ctx.resolutions and not d.cls.informational]
    w = f.write
    w(f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>对账报告 Reconciliation {_e(ctx.day)}</title><style>{_CSS}</style></head><body>\n')
    w(f"<h1>T+1 三方对账报告 Three-way reconciliation report — {_e(ctx.day)}</h1>\n")
    w(f'<div class="sub">生成时间 Generated {_e(ctx.generated_at)} · HIS / 本系统 Our journal / 渠道 Channel bills</div>\n')
    if not res.differences:
        w('<div class="banner clean">✔ 平账：三方一致，无差异。Clean: HIS, our journal and the channels agree.</div>\n')
    elif not open_ids:
        w(f'<div class="banner clean">✔ 无待处理差异（{len(res.differences)} 笔已处理或跨日）。Nothing to resolve: '
          f"{len(res.differences)} difference(s) resolved or only parted by midnight.</div>\n")
    else:
        w(f'<div class="banner dirty">差异 {len(res.differences)} 笔，其中未处理 {len(open_ids)} 笔。'
          f"{len(res.differences)} difference(s), {len(open_ids)} not yet resolved.</div>\n")
    _inputs(w, ctx)
    _totals(w, res.totals, res.platform)
    _classes(w, counts)
    _differences(w, ctx)
    _others(w, ctx)
    w(f'<h2>如何处理 How to resolve</h2><p>每笔差异处理完后执行 Mark each difference resolved when done: <code>{_e(resolve_hint("DIFF_ID"))}</code>。'
      f"长款只能通过 HIS 退款指令退还患者，不得在商户平台直接退款。Long money goes back only through an HIS refund instruction, never directly on a merchant platform."
      f" 详见 See {_e(DOC)}.</p>\n")
    w("</body></html>\n")


def _inputs(w: Callable[[str], int], ctx: ReportContext) -> None:
    w("<h2>数据来源 Inputs</h2><table><tr><th>来源 Source</th><th>文件 File</th></tr>\n")
    for role, name in ctx.inputs:
        w(f"<tr><td>{_e(role)}</td><td><code>{_e(name)}</code></td></tr>\n")
    w("</table>\n")


def _totals(w: Callable[[str], int], totals: dict[Channel, ChannelTotals], platform: bool = False) -> None:
    w("<h2>各渠道合计 Totals per channel</h2><table><tr><th>渠道 Channel</th><th>来源 Source</th><th>笔数 Records</th>"
      "<th>收款 Collected</th><th>退款 Refunded</th><th>净额 Net</th></tr>\n")
    for channel in sorted(totals):
        t = totals[channel]
        if channel is Channel.UNKNOWN and not (t.his.records or t.ours.records or t.chan.records):
            continue
        sides = [("HIS", t.his), ("本系统 Ours", t.ours), ("渠道账单 Channel bill", t.chan)] + ([("支付平台 Platform", t.plat)] if platform else [])
        nets = {side.net for _, side in sides}
        for k, (label, side) in enumerate(sides):
            first = f'<td rowspan="{len(sides)}">{_e(Channel(channel).label)}<br><span class="sub">平账 {t.matched} / {t.transactions}</span></td>' if k == 0 else ""
            cls = "ok" if len(nets) == 1 else "bad"
            w(f'<tr>{first}<td>{label}</td><td class="n">{side.records}</td><td class="n">{signed_yuan(side.collected)}</td>'
              f'<td class="n">{signed_yuan(side.refunded)}</td><td class="n {cls}">{signed_yuan(side.net)}</td></tr>\n')
    w("</table>\n")


def _classes(w: Callable[[str], int], counts: dict[DiffClass, int]) -> None:
    w("<h2>按类别统计 Counts per class</h2><table><tr><th>类别 Class</th><th>笔数 Count</th></tr>\n")
    for cls in DiffClass:
        w(f'<tr><td><span class="tag {cls.value}">{_e(cls.label)}</span></td><td class="n">{counts[cls]}</td></tr>\n')
    w("</table>\n")
    w(bar_chart([(c.label, counts[c], _COLORS[c]) for c in DiffClass]))


def bar_chart(bars: list[tuple[str, int, str]], width: int = 640) -> str:
    """A horizontal bar chart as inline SVG; bars on a square-root scale so 3 differences still
    show next to 100 000 matched transactions (the numbers are printed on every bar)."""
    row, label_w = 30, 210
    top = max((n for _, n, _ in bars), default=0) or 1
    height = row * len(bars) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="counts per class">']
    for k, (label, n, color) in enumerate(bars):
        y = 5 + k * row
        length = 0 if n == 0 else max(2, int((width - label_w - 90) * (n / top) ** 0.5))
        parts.append(f'<text x="0" y="{y + 17}" font-size="13">{_e(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{length}" height="18" fill="{color}"/>')
        parts.append(f'<text x="{label_w + length + 6}" y="{y + 17}" font-size="13">{n}</text>')
    parts.append("</svg>\n")
    return "".join(parts)


def _differences(w: Callable[[str], int], ctx: ReportContext) -> None:
    diffs = ctx.result.differences
    w("<h2>差异明细 Differences</h2>\n")
    if not diffs:
        w("<p>无。None.</p>\n")
        return
    order = {c: k for k, c in enumerate(DIFF_CLASSES)}
    shown = sorted(diffs, key=lambda d: (d.diff_id in ctx.resolutions or d.cls.informational, order[d.cls], -abs(d.position), d.diff_id))[:HTML_ROWS]
    if len(diffs) > HTML_ROWS:
        w(f"<p>只列出前 {HTML_ROWS} 笔（未处理优先），完整清单见 CSV。Showing {HTML_ROWS} of {len(diffs)} (unresolved first); the CSV has all.</p>\n")
    w("<table><tr><th>编号 ID</th><th>类别 Class</th><th>渠道 Channel</th><th>订单 Order / 指令 msg_id / 渠道单号</th>"
      "<th>HIS</th><th>本系统 Ours</th><th>渠道 Channel</th>" + ("<th>支付平台 Platform</th>" if ctx.result.platform else "") +
      "<th>长(+)/短(−) Position</th><th>说明 What happened</th><th>处理 What to do</th><th>状态 Status</th></tr>\n")
    for d in shown:
        r = ctx.resolutions.get(d.diff_id)
        action, command = advice(d, ctx.terminals.get(d.msg_id))
        status = (f"已处理 Resolved {_e(r.resolved_at)}<br>{_e(r.resolved_by)}: {_e(r.note)}" if r
                  else "无需处理 No action" if d.cls.informational else f"未处理 Open<br><code>{_e(resolve_hint(d.diff_id))}</code>")
        cmd = f"<br><code>{_e(command)}</code>" if command else ""
        w(f'<tr class="{"resolved" if r or d.cls.informational else "open"}"><td><code>{_e(d.diff_id)}</code></td>'
          f'<td><span class="tag {d.cls.value}">{_e(d.cls.label)}</span></td><td>{_e(d.channel.label)}</td>'
          f"<td>{_e(d.order_no)}<br><span class=\"sub\">{_e(d.msg_id)}<br>{_e(d.pay_order_no)}</span></td>"
          f"{_side_cell(d.his, d.direction)}{_side_cell(d.ours, d.direction)}{_side_cell(d.chan, d.direction)}"
          f"{_side_cell(d.plat, d.direction) if ctx.result.platform else ''}"
          f'<td class="n">{signed_yuan(d.position)}</td><td>{_e(explain(d))}</td><td>{_e(action)}{cmd}</td><td>{status}</td></tr>\n')
    w("</table>\n")


def _others(w: Callable[[str], int], ctx: ReportContext) -> None:
    others = ctx.result.others
    if not others:
        return
    w(f"<h2>非本系统交易 Other trades on the merchant account</h2><p>账单中不是收款终端发起的交易（公众号、自助机、其他收银系统等），"
      f"不参与本对账，仅列出备查；完整清单见 <code>reconcile-{_e(ctx.day)}-other-trades.csv</code>。"
      f"Bill rows that are not the POS's trades (official account, kiosks, other tills): not reconciled here, listed for reference.</p>\n")
    w("<table><tr><th>渠道 Channel</th><th>笔数 Trades</th><th>净额 Net</th></tr>\n")
    for channel in sorted({o.channel for o in others}):
        mine = [o for o in others if o.channel is channel]
        w(f'<tr><td>{_e(channel.label)}</td><td class="n">{len(mine)}</td><td class="n">{signed_yuan(sum(o.effect for o in mine))}</td></tr>\n')
    w("</table>\n<table><tr><th>账单行 Bill row</th><th>商户订单号 Order</th><th>渠道单号</th><th>交易类型 Type</th><th>设备号 Device</th>"
      "<th>金额 Amount</th><th>时间 Time</th><th>原因 Why not the POS's</th></tr>\n")
    for o in others[:HTML_ROWS]:
        w(f"<tr><td>{_e(o.where)}</td><td><code>{_e(o.out_trade_no)}</code></td><td><code>{_e(o.pay_order_no)}</code></td><td>{_e(o.trade_type)}</td>"
          f'<td>{_e(o.device)}</td><td class="n">{signed_yuan(o.effect)}</td><td>{_e(o.at)}</td><td>{_e(o.why)}</td></tr>\n')
    w("</table>\n")


def _side_cell(v: SideView | None, direction: int) -> str:
    if v is None:
        return '<td class="sub">—</td>'
    return f'<td class="n">{signed_yuan(direction * v.fen)}<br><span class="sub">{_e(v.state.name)}<br>{_e(v.where)}</span></td>'
