"""Hand-built bills in the exact shape merchants download them, independent of the sandbox's writers.

WeChat Pay (downloadbill, bill_type=ALL): nothing is quoted, every value of a detail or summary row
starts with a backtick, free text (商品名称, 商户数据包 = attach) goes in as the merchant sent it:
commas, double quotes and JSON included. Alipay (trade bill zip): GBK CSVs, nothing quoted either,
IDs padded with a tab, file names in GBK without the zip's UTF-8 flag.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

WECHAT_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
                 "微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")
WECHAT_SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,"
                 "支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
                 "退款批次号/请求号,服务费（元）,分润（元）,备注")


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


@dataclass(frozen=True)
class WxRow:
    """One detail row. `kind`: SUCCESS (payment), REFUND or REVOKED."""

    at: str
    txn: str
    out_trade_no: str
    kind: str
    fen: int  # the payment's amount; for REFUND rows the refund's
    trade_type: str = "MICROPAY"
    device: str = "D-SN-000123"
    refund_id: str = ""
    out_refund_no: str = ""
    refund_status: str = "SUCCESS"
    name: str = "门诊缴费"
    attach: str = ""

    def values(self) -> list[str]:
        pay = self.kind == "SUCCESS"
        settle = yuan(self.fen) if pay else "0.00"
        refund = "0.00" if pay else yuan(self.fen)
        fee = "0.00750" if pay else "-0.00750"
        return [self.at, "wx2421b1c4370ec43b", "1900000109", "0", self.device, self.txn, self.out_trade_no, "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
                self.trade_type, self.kind, "CMB_DEBIT", "CNY", settle, "0.00", self.refund_id or "0", self.out_refund_no or "0", refund,
                "0.00", "ORIGINAL" if not pay else "", self.refund_status if not pay else "", self.name, self.attach, fee, "0.60%",
                yuan(self.fen) if pay else "0.00", refund, ""]


def wechat_bill(rows: list[WxRow], *, newline: str = "\r\n", bom: bool = False) -> bytes:
    """The bill as WeChat serves it, with the summary WeChat computes from the rows."""
    settle = sum(r.fen for r in rows if r.kind == "SUCCESS")
    refunds = sum(r.fen for r in rows if r.kind != "SUCCESS")
    lines = [WECHAT_HEADER] + ["`" + ",`".join(r.values()) for r in rows]
    lines += [WECHAT_SUMMARY_HEADER, f"`{len(rows)},`{yuan(settle)},`{yuan(refunds)},`0.00,`0.00000,`{yuan(settle)},`{yuan(refunds)}"]
    text = newline.join(lines) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")


@dataclass(frozen=True)
class AliRow:
    """One detail row. `kind`: 交易 or 退款 (fen positive; a refund is written negative)."""

    trade_no: str
    out_trade_no: str
    kind: str
    fen: int
    at: str
    request_no: str = ""
    name: str = "门诊缴费"
    terminal: str = "D-SN-000123"
    order_fen: int = 0

    def values(self) -> list[str]:
        received = yuan(self.fen if self.kind == "交易" else -self.fen)
        return [self.trade_no + "\t", self.out_trade_no + "\t", self.kind, self.name, self.at, self.at, "", "", "", self.terminal,
                "abc***@163.com", yuan(self.order_fen or self.fen), received, "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00",
                (self.request_no + "\t") if self.request_no else "", "0.00", "0.00", ""]


def alipay_detail(rows: list[AliRow], *, newline: str = "\r\n") -> str:
    trades = [r for r in rows if r.kind == "交易"]
    refunds = [r for r in rows if r.kind == "退款"]
    lines = ["#支付宝业务明细查询", "#账号：[20881021462251350156]", "#起始日期：[2026年11月22日 00:00:00]   终止日期：[2026年11月23日 00:00:00]",
             "#-----------------------------------------业务明细列表----------------------------------------", ALIPAY_HEADER,
             *[",".join(r.values()) for r in rows],
             "#-----------------------------------------业务明细列表结束------------------------------------",
             f"#交易合计：{len(trades)}笔，商家实收共{yuan(sum(r.fen for r in trades))}元，商家优惠共0.00元",
             f"#退款合计：{len(refunds)}笔，商家实收退款共{yuan(-sum(r.fen for r in refunds))}元，商家优惠退款共0.00元",
             "#导出时间：[2026年11月23日 09:03:11]"]
    return newline.join(lines) + newline


class _RawName(zipfile.ZipInfo):
    """A zip entry whose name bytes are given as they are (GBK, no UTF-8 flag), as Alipay writes them."""

    def __init__(self, name: str, raw: bytes, utf8_flag: bool = False) -> None:
        super().__init__(name)
        self.raw = raw
        self.utf8_flag = utf8_flag

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 (zipfile's own name)
        return self.raw, (self.flag_bits | 0x800) if self.utf8_flag else (self.flag_bits & ~0x800)


def alipay_zip(rows: list[AliRow], *, name_encoding: str = "gbk", newline: str = "\r\n", summary: bool = True) -> bytes:
    stem = "20881021462251350156_20261122"
    detail = alipay_detail(rows, newline=newline)
    trades = sum(1 for r in rows if r.kind == "交易")
    members = [(f"{stem}_业务明细.csv", detail)]
    if summary:
        members.append((f"{stem}_业务明细(汇总).csv", newline.join([
            "#支付宝业务汇总查询", "#账号：[20881021462251350156]",
            "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）",
            f"合计,,{trades},{len(rows) - trades},0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00", "#导出时间：[2026年11月23日 09:03:11]"]) + newline))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members:
            info = _RawName(name, name.encode(name_encoding.removesuffix("-noflag")), utf8_flag=name_encoding == "utf-8")
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk"))
    return out.getvalue()


@dataclass(frozen=True)
class Instr:
    """One instruction in a bridge journal, as the bridge records it: accepted, then its result."""

    msg_id: str
    order_no: str
    amount: str  # "+12.50" / "-2.50"
    status: str | None  # SUCCESS, REFUNDED, FAILED...; None: no result yet
    channel: str
    pay_order_no: str
    accepted_at: int
    finished_at: int


def write_journal(path, instructions: list[Instr]) -> None:
    """Through the bridge's own Journal API, with its clock at each instruction's real moments."""
    import hashlib

    from bridge.journal import Journal, NewInstruction, StoredResult

    clock = [0.0]
    journal = Journal(path, synchronous="NORMAL", clock=lambda: clock[0])
    try:
        for i in instructions:
            clock[0] = float(i.accepted_at)
            journal.accept(NewInstruction(i.msg_id, "k2026a", hashlib.sha256(i.msg_id.encode()).digest(), b"{}", i.accepted_at, "T0001",
                                          "D-SN-000123", i.order_no, i.amount))
            if i.status is not None:
                clock[0] = float(i.finished_at)
                journal.store_result(i.msg_id, StoredResult("R" + i.msg_id, b"{}", i.status, i.channel, i.pay_order_no, i.amount,
                                                            i.finished_at, None))
    finally:
        journal.close()
