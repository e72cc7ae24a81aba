"""`payment-gateway`: run the POS -> gateway API.

    payment-gateway --db postgresql://gateway@db/gateway --listen 0.0.0.0:8443 \\
        --tls-cert /etc/gateway/tls/fullchain.pem --tls-key /etc/gateway/tls/key.pem

The master key comes from GATEWAY_MASTER_KEY_FILE / GATEWAY_MASTER_KEY (or --master-key-file). The
process is stateless above the database: run as many as the load needs behind a TCP load balancer.
When ready it prints one JSON line on stdout, {"url": ...}, so launchers (`make run`, tests) know
where it listens. SIGTERM / Ctrl-C stop it after the requests in flight. Each process also runs the
due jobs of the shared jobs table (`gateway.channel_work`): it finishes collections and refunds that
requests left under way, whatever became of the POS or of the process that started them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from gateway.api import GatewayHttpServer
from gateway.alipay_authorizations import AlipayAuthorizations
from gateway.bills import BillFetcher
from gateway.channel_clients import ChannelFactory
from gateway.notifications import PATH_ALIPAY
from gateway.db import open_database
from gateway.errors import GatewayCode, GatewayError
from gateway.ledger import Ledger
from gateway.migrations import LATEST
from gateway.channel_work import ABANDON_AFTER_S, LEASE_S, POLL_INTERVAL_S, REQUERY_INTERVAL_S, ChannelWork, JobRunner, default_owner
from gateway.jobs import FOLLOW_UP_AFTER_S, JobQueue
from gateway.service import GatewayService
from gateway.tenancy import Directory
from gateway.vault import vault_from_env
from gateway.wechat_certificates import CertificateRefresher
from local_storage.stop_signals import StopSignals


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="payment-gateway", description="Serve the POS -> gateway API.")
    p.add_argument("--db", default=os.environ.get("GATEWAY_DB"), help="sqlite:PATH or postgresql://... (default: $GATEWAY_DB)")
    p.add_argument("--master-key-file", help="the 0600 master key file (default: $GATEWAY_MASTER_KEY_FILE or $GATEWAY_MASTER_KEY)")
    p.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (port 0: any free port); plain HTTP only on loopback")
    p.add_argument("--tls-cert", help="certificate chain (PEM) the POS pins")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--migrate", action="store_true", help="apply schema migrations before serving (single-node setups, make run)")
    p.add_argument("--public-url", help="the https:// address the channels reach this gateway at (behind a load balancer): Alipay's "
                   "async notifications go to PUBLIC_URL/v1/notify/alipay, WeChat Pay's refund notifications to "
                   "PUBLIC_URL/v1/notify/wechat/HOSPITAL (default: the --listen address)")
    p.add_argument("--jobs-interval", "--recovery-interval", dest="jobs_interval", type=float, default=POLL_INTERVAL_S, metavar="SECONDS",
                   help=f"look for due jobs (collections and refunds to finish, bills) every SECONDS (default {POLL_INTERVAL_S:g}; "
                        "0: this process runs no jobs)")
    p.add_argument("--job-workers", type=int, default=2, metavar="N", help="jobs run at once by this process (default 2)")
    p.add_argument("--bills-dir", metavar="DIR", help="download every hospital's channel bills of the day before into DIR/HOSPITAL "
                   "(a daily job, due 10:00 Asia/Shanghai; `reconcile run --bills-dir DIR/HOSPITAL` reads them). Default: no bills")
    p.add_argument("--job-follow-up", type=float, default=FOLLOW_UP_AFTER_S, metavar="SECONDS",
                   help=f"a collection or refund not final this long after it was recorded is taken over by a job (default {FOLLOW_UP_AFTER_S:g})")
    p.add_argument("--job-requery", type=float, default=REQUERY_INTERVAL_S, metavar="SECONDS",
                   help=f"a job asks the channel again about a collection still under way this often (default {REQUERY_INTERVAL_S:g})")
    p.add_argument("--job-abandon", type=float, default=ABANDON_AFTER_S, metavar="SECONDS",
                   help=f"a collection not final this long after it was recorded is reversed by the gateway (default {ABANDON_AFTER_S:g})")
    p.add_argument("--job-lease", type=float, default=LEASE_S, metavar="SECONDS",
                   help=f"how long a claimed job is this process's before another may take it over (default {LEASE_S:g})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if not args.db:
            raise GatewayError(GatewayCode.BAD_DATABASE_URL, "say which database: --db or GATEWAY_DB")
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            raise GatewayError(GatewayCode.BAD_CONFIG, f"--listen {args.listen!r} must be HOST:PORT")
        if (args.tls_cert is None) != (args.tls_key is None):
            raise GatewayError(GatewayCode.BAD_CONFIG, "--tls-cert and --tls-key go together")
        db = open_database(args.db)
        if args.migrate:
            db.migrate()
        elif db.schema_version() < LATEST:
            raise GatewayError(GatewayCode.BAD_CONFIG, "the database schema is not up to date; run gateway-admin migrate (or --migrate)")
        directory = Directory(db, vault_from_env(key_file=Path(args.master_key_file) if args.master_key_file else None))
        if args.public_url is not None and not args.public_url.startswith(("https://", "http://")):
            raise GatewayError(GatewayCode.BAD_CONFIG, f"--public-url {args.public_url!r} must be an http(s) URL")
        notify_url = args.public_url.rstrip("/") + PATH_ALIPAY if args.public_url else None
        factory = ChannelFactory(directory, alipay_notify_url=notify_url)
        if args.public_url:
            factory.set_wechat_notify_base(args.public_url)
        service = GatewayService(directory, Ledger(db, follow_up_after_s=args.job_follow_up), factory)
        server = GatewayHttpServer(service, host.strip("[]"), int(port), tls_cert=args.tls_cert, tls_key=args.tls_key)
        if args.jobs_interval < 0:
            raise GatewayError(GatewayCode.BAD_CONFIG, "--jobs-interval must be 0 (off) or a number of seconds")
        if args.job_workers < 1:
            raise GatewayError(GatewayCode.BAD_CONFIG, "--job-workers must be 1 or more")
        for name in ("job_lease", "job_follow_up", "job_requery", "job_abandon"):
            if not getattr(args, name) > 0:
                raise GatewayError(GatewayCode.BAD_CONFIG, f"--{name.replace('_', '-')} must be a positive number of seconds")
    except GatewayError as exc:
        sys.stderr.write(f"payment-gateway: {exc}\n")
        return 1
    stop = StopSignals(signals=("SIGINT", "SIGTERM")).install()
    server.start()
    runner = None
    if args.jobs_interval:
        bills = BillFetcher(service.channels, directory, Path(args.bills_dir)) if args.bills_dir else None
        work = ChannelWork(service.ledger, service.channels, JobQueue(db, owner=default_owner()), lease_s=args.job_lease,
                           abandon_after_s=args.job_abandon, requery_s=args.job_requery, bills=bills,
                           alipay_tokens=AlipayAuthorizations(directory, service.channels),
                           certificates=CertificateRefresher(service.channels, directory))
        runner = JobRunner(work, args.jobs_interval, workers=args.job_workers).start()
    sys.stdout.write(json.dumps({"url": server.url, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    # Woken now and then (StopSignals.wait): Python runs a signal's handler in this thread only, and a
    # SIGTERM the kernel gave another thread (an HTTP handler's) would otherwise wait for a wake-up that
    # never comes (seen: a gateway that outlived its SIGTERM in tests/gateway/test_jobs_processes.py).
    stop.wait()
    if runner is not None:
        runner.stop()
    server.stop()
    db.close()
    stop.close()  # only now: a second SIGTERM during the shutdown changes nothing, instead of cutting it short
    return 0


if __name__ == "__main__":
    sys.exit(main())
