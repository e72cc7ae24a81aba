"""What each difference means and what finance staff should do, in Chinese with English.

The advice follows one rule from the design: money goes back to a patient only through an HIS
refund instruction (HIS -> bridge -> POS), never from a channel's merchant platform, so that HIS,
our journal and the channel stay in step. For money HIS does not show (long), the first question
is whether HIS should have booked it (a failed write-back: fetch the stored result), and only if
the patient is owed it, refund it through HIS.
"""

from __future__ import annotations

from protocol.amount import format_net_yuan, format_yuan
from reconcile.model import COLLECT, Difference, Reason

DOC = "docs/reconciliation.md"

EXPLAIN: dict[Reason, str] = {
    Reason.HIS_MISSING: "渠道已收款，HIS 无此记录。Channel has the payment; HIS has no record of it.",
    Reason.HIS_NOT_PAID: "渠道已收款，HIS 未记为已收（回写失败的单边账）。Channel has the payment; HIS does not show it as paid (failed write-back).",
    Reason.CHANNEL_MISSING: "HIS 记为已收，渠道账单中没有这笔钱。HIS shows a payment the channel bill does not have.",
    Reason.REFUND_CHANNEL_ONLY: "渠道已退款，HIS 未记此退款。The channel refunded; HIS does not show the refund.",
    Reason.REFUND_HIS_ONLY: "HIS 记为已退款，渠道没有退款。HIS shows a refund the channel did not make: the patient may not have the money back.",
    Reason.AMOUNT_HIS_CHANNEL: "HIS 与渠道金额不一致。HIS and the channel disagree on the amount.",
    Reason.AMOUNT_OURS: "HIS 与渠道一致，本系统日志金额不同。HIS and the channel agree; our journal records another amount.",
    Reason.OURS_MISSING: "HIS 与渠道一致，本系统日志中没有这条指令（是否漏了某台收费电脑的日志？）。HIS and the channel agree; no journal given has this instruction (a cashier PC's journal missing?).",
    Reason.OURS_DISAGREES: "HIS 与渠道一致，本系统日志状态不同。HIS and the channel agree; our journal shows another state.",
    Reason.MSG_ID_CONFLICT: "HIS 记录与本系统指令的 msg_id 相同但订单或方向不同。An HIS row shares a msg_id with our instruction but names another order or direction.",
    Reason.DUPLICATE_HIS_ROW: "HIS 导出中同一指令出现两次。The HIS export lists the same instruction twice.",
    Reason.DUPLICATE_CHANNEL_ROW: "渠道账单中同一笔交易出现两次。The channel bill lists the same transaction twice.",
    Reason.DUPLICATE_OURS: "两份日志中有相同的指令。The same instruction is in two journals.",
    Reason.DUPLICATE_ORDER_ECHO: "HIS 把“重复收费”应答（duplicate_order）记成了新的收款。HIS booked a duplicate_order reply (the first payment's result again) as a new payment.",
    Reason.SECOND_PAYMENT: "渠道对同一指令收了第二笔钱（按渠道、金额、时间匹配）。The channel took a second payment for an instruction already paid (matched by channel, amount and time).",
    Reason.OURS_MISSED_PAYMENT: "收款终端认为支付失败，但渠道已收款（按渠道、金额、时间匹配到此指令）。The POS believes the payment failed, but the channel holds it (matched to this instruction by channel, amount and time).",
    Reason.CHANNEL_ID_DIFFERS: "金额一致，但渠道交易号与本系统结果不同（按渠道、金额、时间匹配）。Amounts agree, but the bill's transaction id is not the one in our result (matched by channel, amount and time).",
    Reason.RESULT_NEXT_DAY: "指令当日发出，结果在零点后才返回：HIS（及渠道账单）记在今天，本系统结果记在次日，次日对账时核对。"
                            "Sent today, its result came after midnight: HIS (and the bill) have it today, our journal on the result's day, where it is checked again.",
    Reason.SEEN_PREVIOUS_DAY: "指令在前一日发出、今天才完成：HIS（及渠道账单）记在发出当日，已在当日对账中核对。"
                              "Sent on an earlier day and finished today: HIS (and the bill) have it on the day it was sent, where that day's run saw it.",
    Reason.PLATFORM_MISSING: "HIS、本系统与渠道一致，支付平台（网关）账本中没有这笔。HIS, our journal and the channel agree; the platform's (gateway's) ledger has no record of it.",
    Reason.PLATFORM_DISAGREES: "HIS、本系统与渠道一致，支付平台账本记录的状态不同。HIS, our journal and the channel agree; the platform's ledger records another outcome.",
    Reason.PLATFORM_AMOUNT: "HIS、本系统与渠道一致，支付平台账本记录的金额不同。HIS, our journal and the channel agree; the platform's ledger records another amount.",
    Reason.PLATFORM_IN_FLIGHT: "支付平台仍在处理这笔（收款中/撤销中/退款中）。The platform has not finished it yet (paying, reversing or refunding).",
    Reason.PLATFORM_ONLY: "只有支付平台账本记录了这笔资金变动，HIS、本系统与渠道都没有。Only the platform's ledger records this money; HIS, our journal and the channel do not.",
}

PLATFORM_REASONS = (Reason.PLATFORM_MISSING, Reason.PLATFORM_DISAGREES, Reason.PLATFORM_AMOUNT, Reason.PLATFORM_IN_FLIGHT, Reason.PLATFORM_ONLY)


def explain(d: Difference) -> str:
    text = EXPLAIN[d.reason]
    if d.near_midnight:
        text += " 接近零点：可能在相邻日期的账单中。Near midnight: may be in the neighbouring day's bill."
    return text


# A signed total or difference: the one formatter of those lives with the parser (protocol.amount).
signed_yuan = format_net_yuan


def advice(d: Difference, terminal: str | None = None) -> tuple[str, str | None]:
    """(what to do, the exact command if there is one). `terminal`: the cashier window whose POS
    took the payment (a refund must be sent through that window)."""
    if d.reason in (Reason.RESULT_NEXT_DAY, Reason.SEEN_PREVIOUS_DAY):
        return ("无需处理：跨零点的同一笔交易，两天合计一致。No action: one transaction parted by midnight; the two days agree.", None)
    amount = format_yuan(abs(d.position)) if d.position else ""
    window = f" --terminal {terminal}" if terminal else ""
    if d.reason in (Reason.HIS_MISSING, Reason.HIS_NOT_PAID):
        status = f"his-client status {d.msg_id}" if d.msg_id else None
        refund = f"his-client refund -{amount} --order {d.order_no}{window}"
        first = f"先用 `{status}` 取回结果，若 HIS 应记此收款则在 HIS 中补记；" if status else "先在 HIS 中核对该订单；"
        return (
            first + f"若应退还患者，由 HIS 发起退款指令（不要在商户平台直接退款）：{refund}。"
            f" First check whether HIS should book it{' (fetch the stored result)' if status else ''}; if the patient is owed it,"
            f" refund it through an HIS refund instruction, never directly on the merchant platform.",
            refund,
        )
    if d.reason is Reason.OURS_MISSED_PAYMENT:
        return (
            "收款终端认为此笔失败，HIS 现在无法对其发起退款：请联系系统支持人员，让终端向渠道重新查询该笔（终端的恢复流程），"
            "终端确认收款后 HIS 会收到结果，再按需由 HIS 发起退款。不要在商户平台直接退款。"
            " HIS cannot refund it yet: the POS believes it failed. Ask support to have the POS re-query this payment (its recovery);"
            " once the POS confirms it, HIS gets the result and can refund it through an HIS instruction. Never refund it on the merchant platform.",
            f"his-client status {d.msg_id}" if d.msg_id else None,
        )
    if d.reason is Reason.SECOND_PAYMENT:
        return (
            "同一指令被收款两次：请勿在商户平台直接退款，联系系统支持人员核查终端日志后处理。"
            " Do not refund on the merchant platform; contact support with this difference id to trace the terminal's journal.",
            None,
        )
    if d.reason in (Reason.CHANNEL_MISSING, Reason.REFUND_HIS_ONLY):
        status = f"his-client status {d.msg_id}" if d.msg_id else None
        return (
            ("核对 HIS 是否误记；" + (f"`{status}` 显示本系统的结果；" if status else "") + "如确未到账，协调相关部门线下追款或冲账，完成后标记为已处理。"
             " Check whether HIS booked it by mistake; if the money is really missing, recover it offline or reverse the entry, then mark it resolved."),
            status,
        )
    if d.reason is Reason.REFUND_CHANNEL_ONLY:
        return ("在 HIS 中补记此退款（渠道已退给患者）。Book the refund in HIS: the channel has paid it back.", f"his-client status {d.msg_id}" if d.msg_id else None)
    if d.reason in PLATFORM_REASONS:
        return ("医院的账（HIS、渠道）无需改动：请把此差异编号发给支付服务商，由其核对网关账本（`gateway-admin` 列出需人工处理的交易），处理后标记为已处理。"
                " Nothing to change in the hospital's books: send this difference id to the payment service provider to check the gateway's"
                " ledger (`gateway-admin` lists what needs a person), then mark it resolved.", None)
    if d.reason is Reason.DUPLICATE_ORDER_ECHO:
        return ("在 HIS 中撤销这笔重复记账：渠道只收了一次。Reverse the duplicate booking in HIS: the channel collected once.", None)
    if d.direction == COLLECT and d.position > 0:
        return (f"医院多收 {amount} 元：核对后由 HIS 发起退款指令。The hospital holds {amount} more: after checking, refund through HIS.", f"his-client refund -{amount} --order {d.order_no}{window}")
    return ("核对三方记录后修正出错的一方，完成后标记为已处理。Compare the three records, correct the one in error, then mark it resolved.", None)


def resolve_hint(diff_id: str) -> str:
    return f'reconcile resolve {diff_id} --note "..."'
