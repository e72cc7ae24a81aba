"""One JSON line per event (stdlib logging with a JSON formatter).

Call sites log an `event` name and explicit fields, never whole objects, so keys, payment codes
and full patient names cannot slip into a log line:

    log_event(log, "instruction_accepted", msg_id=..., terminal_id=..., amount="+12.50")
    log_event(log, "handshake_refused", level=logging.WARNING, security=True, port=..., reason=...)

Security events carry "security": true, so a SIEM (or `findstr "\"security\": true"`) finds them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from local_storage.private_files import prepare_private_file

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        event = getattr(record, "event", None)
        if event:
            line["event"] = event
        if getattr(record, "security", False):
            line["security"] = True
        line["msg"] = record.getMessage()
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def log_event(logger: logging.Logger, event: str, msg: str = "", *, level: int = logging.INFO,
              security: bool = False, **fields: object) -> None:
    if logger.isEnabledFor(level):
        logger.log(level, msg or event.replace("_", " "), extra={"event": event, "security": security, "fields": fields})


def setup_logging(level: str = "INFO", file: Path | None = None) -> logging.Handler:
    """Send the `bridge` loggers to stderr or a file, one JSON object a line."""
    if file is not None:
        prepare_private_file(file)  # 0600: orders, amounts, masked names
        handler: logging.Handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    # The JSON lines never show process or thread names: do not make every record look them up.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger("bridge")
    for old in root.handlers:
        old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return handler
