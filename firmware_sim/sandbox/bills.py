"""Daily bills in each channel's own format, from the sandbox's ledger. Pure: lines in, bytes out.

WeChat Pay (downloadbill, UTF-8 text): a header row, one row per payment and per refund of the day
with every value prefixed by a backtick, then the summary header and the summary row (also
backticked). Amounts are yuan with two decimals; fees have five. bill_type ALL / SUCCESS / REFUND
choose the rows and the columns (WeChat's "交易账单" format with 应结订单金额, since 2018).

Alipay (alipay.data.dataservice.bill.downloadurl.query -> a zip): two GBK CSV files,
`<pid>_<yyyymmdd>_业务明细.csv` (comment lines starting with '#', the column header, one row per
payment (业务类型 交易) and refund (退款, 商家实收 negative), the end marker and the totals) and
`<pid>_<yyyymmdd>_业务明细(汇总).csv` (per-store totals and a 合计 row). File names in the zip are
GBK without the UTF-8 flag, as Alipay's are: open with zipfile.ZipFile(..., metadata_encoding="gbk").

docs/simulator.md lists every column. The sandbox charges no fee (手续费/服务费 0).
"""

from __future__ import annotations

import datetime
import functools
import io
import zipfile
from dataclasses import dataclass

from firmware_sim.sandbox.store import SHANGHAI, Order, Refund
from protocol.amount import format_net_yuan
from protocol.amount import format_yuan as _format_yuan

# Bills repeat the same few thousand amounts: formatting each once is worth a cache.
format_yuan = functools.lru_cache(maxsize=4096)(_format_yuan)

WECHAT_BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
_HEAD = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额"
_TAIL = "商品名称,商户数据包,手续费,费率,订单金额"
WECHAT_HEADERS = {
    "ALL": f"{_HEAD},微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,{_TAIL},申请退款金额,费率备注",
    "SUCCESS": f"{_HEAD},{_TAIL},费率备注",
    "REFUND": f"{_HEAD},退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,{_TAIL},申请退款金额,费率备注",
}
WECHAT_SUMMARY_HEADERS = {
    "ALL": "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
    "SUCCESS": "总交易单数,应结订单总金额,手续费总金额,订单总金额",
    "REFUND": "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
}
ALIPAY_DETAIL_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
                        "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                        "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
ALIPAY_SUMMARY_HEADER = "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
ALIPAY_DETAIL_BEGIN = "#-----------------------------------------业务明细列表----------------------------------------"
ALIPAY_DETAIL_END = "#-----------------------------------------业务明细列表结束------------------------------------"
ALIPAY_SUMMARY_BEGIN = "#-----------------------------------------业务汇总列表----------------------------------------"
ALIPAY_SUMMARY_END = "#----------------------------------------业务汇总列表结束-------------------------------------"
CRLF = "\r\n"


@dataclass(frozen=True, slots=True)
class PaymentLine:
    paid_at: datetime.datetime
    created_at: datetime.datetime
    txn_id: str
    out_trade_no: str
    buyer_id: str
    total_fen: int
    subject: str
    device_info: str


@dataclass(frozen=True, slots=True)
class RefundLine:
    refunded_at: datetime.datetime
    order_created_at: datetime.datetime
    txn_id: str
    out_trade_no: str
    buyer_id: str
    order_total_fen: int
    refund_id: str
    out_refund_no: str  # "" for the reversal of a paid order (it has no refund number)
    amount_fen: int
    subject: str
    device_info: str
    reversal: bool


def _dt(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, SHANGHAI).replace(microsecond=0)


def payment_line(order: Order, buyer_id: str) -> PaymentLine:
    assert order.paid_at is not None
    return PaymentLine(_dt(order.paid_at), _dt(order.created_at), order.txn_id, order.out_trade_no, buyer_id, order.total_fen,
                       order.subject, order.device_info or "")


def refund_line(refund: Refund, order: Order, buyer_id: str) -> RefundLine:
    reversal = refund.kind == "REVERSAL"
    return RefundLine(_dt(refund.created_at), _dt(order.created_at), order.txn_id, order.out_trade_no, buyer_id, order.total_fen,
                      refund.refund_id, "" if reversal else refund.out_refund_no, refund.amount_fen, order.subject,
                      order.device_info or "", reversal)


def _clean(text: str) -> str:
    """Neither format quotes values: keep separators and line breaks out of free text."""
    return text.replace(",", "，").replace("`", "'").replace("\r", " ").replace("\n", " ").replace("\t", " ")


@functools.lru_cache(maxsize=4096)
def _stamp(moment: datetime.datetime) -> str:
    # Cached (a day has 86400 seconds and a bill up to millions of rows); isoformat is C and ~10x faster than strftime on an aware datetime (a bill has a million rows).
    return moment.isoformat(" ", "seconds")[:19]


# -- WeChat Pay -------------------------------------------------------------------------------

def wechat_bill(bill_type: str, appid: str, mch_id: str, payments: list[PaymentLine], refunds: list[RefundLine], *,
                sub_mch_id: str = "0") -> str:
    """`sub_mch_id`: the 特约商户号 column (a service provider's bill of one sub-merchant); "0" for a direct merchant."""
    if bill_type not in WECHAT_BILL_TYPES:
        raise ValueError(f"bill_type must be one of {WECHAT_BILL_TYPES}")
    # Each row is joined as soon as it is made: a million rows as lists of 27 strings would hold
    # gigabytes until the end.
    rows: list[tuple[datetime.datetime, str]] = []
    if bill_type in ("ALL", "SUCCESS"):
        for p in payments:
            head = [_stamp(p.paid_at), appid, mch_id, sub_mch_id, p.device_info, p.txn_id, p.out_trade_no, p.buyer_id, "MICROPAY", "SUCCESS",
                    "OTHERS", "CNY", format_yuan(p.total_fen), "0.00"]
            tail = [_clean(p.subject), "", "0.00000", "0.00%", format_yuan(p.total_fen)]
            if bill_type == "ALL":
                rows.append((p.paid_at, "`" + ",`".join(head + ["0", "0", "0.00", "0.00", "", ""] + tail + ["0.00", ""])))
            else:
                rows.append((p.paid_at, "`" + ",`".join(head + tail + [""])))
    if bill_type in ("ALL", "REFUND"):
        for r in refunds:
            head = [_stamp(r.refunded_at), appid, mch_id, sub_mch_id, r.device_info, r.txn_id, r.out_trade_no, r.buyer_id, "MICROPAY",
                    "REVOKED" if r.reversal else "REFUND", "OTHERS", "CNY", "0.00", "0.00"]
            refund = [r.refund_id, r.out_refund_no, format_yuan(r.amount_fen), "0.00", "ORIGINAL", "SUCCESS"]
            tail = [_clean(r.subject), "", "0.00000", "0.00%", "0.00", format_yuan(r.amount_fen), ""]
            times = [_stamp(r.refunded_at), _stamp(r.refunded_at)] if bill_type == "REFUND" else []
            rows.append((r.refunded_at, "`" + ",`".join(head + times + refund + tail)))
    rows.sort(key=lambda row: row[0])
    paid = sum(p.total_fen for p in payments) if bill_type != "REFUND" else 0
    refunded = sum(r.amount_fen for r in refunds) if bill_type != "SUCCESS" else 0
    if bill_type == "SUCCESS":
        summary = [str(len(rows)), format_yuan(paid), "0.00000", format_yuan(paid)]
    else:
        summary = [str(len(rows)), format_yuan(paid), format_yuan(refunded), "0.00", "0.00000", format_yuan(paid), format_yuan(refunded)]
    lines = [WECHAT_HEADERS[bill_type]]
    lines += [line for _, line in rows]
    lines += [WECHAT_SUMMARY_HEADERS[bill_type], ",".join("`" + value for value in summary)]
    return CRLF.join(lines) + CRLF


# -- Alipay -----------------------------------------------------------------------------------


def _cn(moment: datetime.datetime) -> str:
    return moment.strftime("%Y年%m月%d日 %H:%M:%S")


def buyer_logon_id(buyer_id: str) -> str:
    return f"{buyer_id[4:7]}****{buyer_id[-4:]}" if len(buyer_id) >= 11 else buyer_id


def alipay_detail_csv(day: datetime.date, pid: str, payments: list[PaymentLine], refunds: list[RefundLine], exported_at: datetime.datetime,
                      store_id: str = "") -> str:
    start = datetime.datetime.combine(day, datetime.time())
    rows: list[tuple[datetime.datetime, str]] = []
    zero = "0.00"
    for p in payments:
        rows.append((p.paid_at, ",".join([p.txn_id + "\t", p.out_trade_no + "\t", "交易", _clean(p.subject), _stamp(p.created_at), _stamp(p.paid_at),
                                 store_id, "", "", _clean(p.device_info), buyer_logon_id(p.buyer_id), format_yuan(p.total_fen),
                                 format_yuan(p.total_fen), zero, zero, zero, zero, zero, "", zero, zero, "", zero, zero, ""])))
    for r in refunds:
        rows.append((r.refunded_at, ",".join([r.txn_id + "\t", r.out_trade_no + "\t", "退款", _clean(r.subject), _stamp(r.order_created_at),
                                    _stamp(r.refunded_at), store_id, "", "", _clean(r.device_info), buyer_logon_id(r.buyer_id),
                                    format_yuan(r.order_total_fen), format_net_yuan(-r.amount_fen), zero, zero, zero, zero, zero, "", zero,
                                    zero, (r.out_refund_no + "\t") if r.out_refund_no else "", zero, zero, "撤销" if r.reversal else ""])))
    rows.sort(key=lambda row: row[0])
    paid = sum(p.total_fen for p in payments)
    refunded = sum(r.amount_fen for r in refunds)
    lines = [
        "#支付宝业务明细查询",
        f"#账号：[{pid}]",
        f"#起始日期：[{_cn(start)}]   终止日期：[{_cn(start + datetime.timedelta(days=1))}]",
        ALIPAY_DETAIL_BEGIN,
        ALIPAY_DETAIL_HEADER,
        *[line for _, line in rows],
        ALIPAY_DETAIL_END,
        f"#交易合计：{len(payments)}笔，商家实收共{format_yuan(paid)}元，商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{format_net_yuan(-refunded)}元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn(exported_at)}]",
    ]
    return CRLF.join(lines) + CRLF


def alipay_summary_csv(day: datetime.date, pid: str, payments: list[PaymentLine], refunds: list[RefundLine], exported_at: datetime.datetime,
                       store_id: str = "") -> str:
    start = datetime.datetime.combine(day, datetime.time())
    paid = sum(p.total_fen for p in payments)
    net = paid - sum(r.amount_fen for r in refunds)
    zero = "0.00"
    totals = [str(len(payments)), str(len(refunds)), format_yuan(paid), format_net_yuan(net), zero, zero, zero, zero, zero, format_net_yuan(net)]
    lines = [
        "#支付宝业务汇总查询",
        f"#账号：[{pid}]",
        f"#起始日期：[{_cn(start)}]   终止日期：[{_cn(start + datetime.timedelta(days=1))}]",
        ALIPAY_SUMMARY_BEGIN,
        ALIPAY_SUMMARY_HEADER,
        ",".join([store_id, ""] + totals),
        ",".join(["合计", ""] + totals),
        ALIPAY_SUMMARY_END,
        f"#导出时间：[{_cn(exported_at)}]",
    ]
    return CRLF.join(lines) + CRLF


class _GbkName(zipfile.ZipInfo):
    """A zip entry whose name is stored in GBK without the UTF-8 flag, as Alipay's bill zips are."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 (zipfile's own name)
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def alipay_bill_zip(day: datetime.date, pid: str, payments: list[PaymentLine], refunds: list[RefundLine], exported_at: datetime.datetime,
                    store_id: str = "") -> bytes:
    stem = f"{pid}_{day.strftime('%Y%m%d')}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            (f"{stem}_业务明细.csv", alipay_detail_csv(day, pid, payments, refunds, exported_at, store_id)),
            (f"{stem}_业务明细(汇总).csv", alipay_summary_csv(day, pid, payments, refunds, exported_at, store_id)),
        ):
            info = _GbkName(name, date_time=exported_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk", errors="replace"))
    return out.getvalue()
