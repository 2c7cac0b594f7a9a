"""Where lm-eval's output goes: its log records and what it prints into the run log (the root
logger's log files), not onto the terminal."""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator

LIBRARY_LOGGERS = ("lm_eval", "lm-eval")  # its logger's name from 0.4.8 on, and before


@contextlib.contextmanager
def library_output() -> Iterator[None]:
    """lm-eval's log records, and what it prints (progress bars, notes), into the run log -- the
    root logger's log files -- and not onto the terminal. Without a log file (a script, a notebook)
    its warnings go where the root logger sends them and its prints nowhere."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate, logger.level))
        logger.handlers, logger.propagate = list(files), not files
        logger.setLevel(logging.INFO if files else logging.WARNING)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            yield
    finally:
        printed_log = logging.getLogger(f"{LIBRARY_LOGGERS[0]}.printed")  # goes to lm_eval's handlers: the files
        for line in printed_lines(printed.getvalue()):
            printed_log.info(line)
        for logger, handlers, propagate, level in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def printed_lines(text: str) -> list[str]:
    """Printed text as log lines, a progress bar as its last state: what follows a line's last
    carriage return (``str.splitlines`` would make each of a bar's updates a line)."""
    return [last for line in text.split("\n") if (last := line.split("\r")[-1].strip())]
