"""Logging setup shared by every feedfabric process (loguru).

Each process writes its own file ``<log_dir>/<name>.log`` (rotated, with the
exchange/symbol context that code binds via ``logger.bind(exchange=..., symbol=...)``)
and a compact line on stderr. Under ``feedfabric up`` the supervisor reads the
children's stderr and prefixes each line with the process name: the combined console view.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

_CONSOLE = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {extra[ctx]}{message}"
_FILE = "{time:YYYY-MM-DDTHH:mm:ss.SSSSSSZZ} {level: <7} {extra[process]} {extra[ctx]}{message}"


def _ctx(record: Record) -> None:
    extra = record["extra"]
    parts = [f"{k}={extra[k]}" for k in ("exchange", "symbol", "gateway", "consumer") if extra.get(k)]
    extra["ctx"] = ("[" + " ".join(parts) + "] ") if parts else ""
    extra.setdefault("process", "-")


def setup_logging(process: str, log_dir: Path | None = None, level: str = "INFO", *,
                  colorize: bool | None = None) -> Path | None:
    """Configure loguru for process ``process``; returns the log file path (None without ``log_dir``)."""
    logger.remove()
    logger.configure(extra={"process": process}, patcher=_ctx)
    logger.add(sys.stderr, level=level, format=_CONSOLE, colorize=colorize, backtrace=False, diagnose=False)
    if log_dir is None:
        return None
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{process}.log"
    # enqueue=False: writes are synchronous so nothing logged is lost on a crash.
    logger.add(path, level=level, format=_FILE, rotation="50 MB", retention=5, backtrace=False,
               diagnose=False)
    return path
