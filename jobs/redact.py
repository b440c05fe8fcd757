"""Secrets out of every log line and stored error: API keys and tokens in query strings,
passwords in URLs. httpx alone logs each request's URL (the Alpha Vantage key included) at INFO.

``install()`` masks every log record as it is made, whatever logger or handler it goes to.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"
# ?apikey=… &token=… password=… (any case; the name may carry a prefix, e.g. x_api_key)
_QUERY_SECRET = re.compile(
    r"(?i)\b([a-z0-9_-]*(?:api[_-]?key|apikey|token|secret|password|passwd|pwd|access[_-]?key)"
    r"[a-z0-9_-]*)=([^&\s'\"<>#]+)")
# scheme://user:password@host
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s'\"]*):([^@/\s'\"]+)@")


def redact(text: str) -> str:
    if "=" not in text and "@" not in text:
        return text
    text = _QUERY_SECRET.sub(lambda m: f"{m[1]}={MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m[1]}:{MASK}@", text)


_installed = False


def install() -> None:
    """Mask secrets in every log record from now on (message, arguments and traceback)."""
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            # formatted now, masked; handlers use exc_text as it is
            record.exc_text = redact(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
