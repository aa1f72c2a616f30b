"""Logging filters for the server's log."""

from __future__ import annotations

import logging


class WithoutTraceback(logging.Filter):
    """Keep a record's message, drop its traceback: for refusals that are expected (a request with a
    foreign Host header is answered 400), not faults of the server."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
