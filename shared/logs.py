"""Logging: readable lines on the console, JSON lines (org, pipeline and run id) for machines.

Embedded backend: the console (stderr) shows one readable line per event, warnings and up unless verbose, and
every event at INFO and up is also kept as JSON lines in $CLOUDACT_HOME/logs/cloudact.log (rotated at 10 MB, 5
kept), tracebacks included. `fmt="json"` (the CLI's `--log-format json`) writes the JSON lines on the console too.
GCP backend: JSON lines on stdout at INFO, the structured form Cloud Logging reads; no file.

Other libraries' records reach the handlers from WARNING up; ours (`cloudact.*`) from INFO.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path

_CONTEXT_KEYS = ("org", "pipeline", "run_id")
LOG_FILE = Path("logs") / "cloudact.log"
FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "time": _time(record).isoformat(timespec="milliseconds"),
                 "logger": record.name, "message": record.getMessage()}
        for key in _CONTEXT_KEYS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """One line per event: time, level, org and pipeline, the message; an exception as its type and message only
    (its traceback goes to the log file, named when there is one)."""

    def __init__(self, log_file: Path | None = None):
        super().__init__()
        self.log_file = log_file

    def format(self, record: logging.LogRecord) -> str:
        where = " ".join(str(record.__dict__[k]) for k in ("org", "pipeline") if record.__dict__.get(k))
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            text += f": {type(e).__name__}: {e}"
            if self.log_file is not None:
                text += f" (traceback in {self.log_file})"
        text = " ".join(text.split())  # one line, whatever the message holds
        level = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "error"}.get(record.levelname,
                                                                                  record.levelname.lower())
        return f"{_time(record):%H:%M:%S} {level:<7} {where + ': ' if where else ''}{text}"


def _time(record: logging.LogRecord) -> dt.datetime:
    return dt.datetime.fromtimestamp(record.created, dt.UTC)


class _Ours(logging.Filter):
    """Our records from INFO up, other libraries' from WARNING up (SDKs log every HTTP request at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith("cloudact") or record.levelno >= logging.WARNING


class _FileHandler(logging.handlers.RotatingFileHandler):
    """Opened at the first record, its folder (owner-only) made then: a command that logs nothing creates nothing."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return super()._open()


class _Current:
    """sys.stderr or sys.stdout as it is when a record is written, not when the handler was made: test runners and
    the admin channel of `cloudact serve` swap them."""

    def __init__(self, name: str):
        self.name = name

    def write(self, text: str) -> int:
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def _ours(handler: logging.Handler) -> bool:
    return getattr(handler, "_cloudact", False)


def setup(level: int = logging.INFO, fmt: str | None = None, home: Path | None = None,
          backend: str | None = None) -> Path | None:
    """Install the handlers on the root logger (again: replaced, so the last call's settings hold). `level` is the
    console's; `fmt` text or json (default: json on the GCP backend, text otherwise). Returns the log file's path
    (None on GCP)."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if backend is None or (home is None and backend != "gcp"):
        from shared.config import settings

        s = settings()
        backend, home = backend or s.backend, home or s.home
    root = logging.getLogger()
    for h in [h for h in root.handlers if _ours(h)]:
        root.removeHandler(h)
        h.close()
    for h in [h for h in logging.getLogger("cloudact").handlers if _ours(h)]:  # installed by an older setup()
        logging.getLogger("cloudact").removeHandler(h)
    logging.getLogger("cloudact").propagate = True
    if backend == "gcp":
        console = logging.StreamHandler(_Current("stdout"))
        console.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
        console.setLevel(min(level, logging.INFO))
        handlers, log_file = [console], None
    else:
        log_file = Path(home) / LOG_FILE
        keep = _FileHandler(log_file, maxBytes=10 << 20, backupCount=5, delay=True, encoding="utf-8")
        keep.setFormatter(JsonFormatter())
        keep.setLevel(logging.INFO)
        console = logging.StreamHandler(_Current("stderr"))
        console.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(_shown(log_file)))
        console.setLevel(level)
        handlers = [keep, console]
    for h in handlers:
        h._cloudact = True
        h.addFilter(_Ours())
        root.addHandler(h)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    logging.getLogger("cloudact").setLevel(logging.INFO)
    return log_file


def console_handler() -> logging.Handler | None:
    """The console handler setup() installed (to filter what one command shows), if any."""
    for h in logging.getLogger().handlers:
        if _ours(h) and isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            return h
    return None


def log_file() -> Path | None:
    """The file setup() keeps the log in, if any."""
    for h in logging.getLogger().handlers:
        if _ours(h) and isinstance(h, logging.FileHandler):
            return Path(h.baseFilename)
    return None


def _shown(path: Path) -> Path:
    """The log file's path as a user would type it: relative to the working folder when inside it."""
    try:
        rel = Path(os.path.relpath(path))
    except ValueError:
        return path
    return path if rel.parts[:1] == ("..",) else rel


def for_run(org: str, pipeline: str, run_id: str) -> logging.LoggerAdapter:
    return logging.LoggerAdapter(logging.getLogger("cloudact.run"), {"org": org, "pipeline": pipeline, "run_id": run_id})
