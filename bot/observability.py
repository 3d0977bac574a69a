"""Observability: structured JSON logs without personal data, a request id per request, and
Prometheus metrics at `/metrics`.

Logs. `configure_logging(json_lines=True)` (what `volbot serve` turns on) writes one JSON
object per line: time, level, logger, message, `request_id` and any `extra=` fields. The
`PersonalDataFilter` on the handler masks what must never reach a log file — WeChat
openids, mainland mobile numbers, resident ID numbers — in the message, its arguments, the
extra fields and the traceback, whoever logged them (our code, wechatpy, gunicorn).

Request id. Taken from `X-Request-Id` (nginx sets it, see deploy/) or made up, kept in a
context variable for the request (the pipeline copies the context into its turn thread),
put on every log line and returned in the `X-Request-Id` response header.

Metrics. Counters and histograms of the web processes use prometheus_client; under
`volbot serve` (several gunicorn workers) they are kept in its multiprocess mode, one set of
files per worker in `PROMETHEUS_MULTIPROC_DIR` (under the instance folder), summed at each
scrape. What belongs to the whole deployment rather than to one web process is read at
scrape time instead: the push queue's depth (Redis), pushes by state and dead letters by
queue (SQL) and WeChat API errors by code (counted in Redis by every queue worker on every
host, see `count_api_error`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("volbot.observability")

# ---- personal data ------------------------------------------------------------------------

# A WeChat openid is 28 characters of [A-Za-z0-9_-] starting with "o" (e.g.
# oDF3iY9ffA-hqb2vVvbr7qxf6A0Q); the project's test and demo ids start with "o_"
# (o_demo_…, o_bench_…) and are masked too.
_OPENID_STRICT = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")
_OPENID_PREFIXED = re.compile(r"(?<![A-Za-z0-9_-])o_[A-Za-z0-9_-]+")
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])(\d{4})\d{10}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def mask_personal_data(text: str) -> str:
    """`text` with openids, ID numbers and mobile numbers masked (ID numbers first: a
    mobile number's pattern can sit inside one)."""
    if not text:
        return text
    text = _ID_NUMBER.sub(r"\1**********\2", text)
    text = _MOBILE.sub(r"\1****\2", text)
    text = _OPENID_STRICT.sub(_mask_openid, text)
    return _OPENID_PREFIXED.sub(_mask_openid, text)


def _mask_openid(m: re.Match) -> str:
    return "o***" + m.group(0)[-4:] if len(m.group(0)) > 8 else "o***"


class PersonalDataFilter(logging.Filter):
    """Masks personal data in a record before any handler formats it (see module doc)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string still gets logged
            message = str(record.msg)
        record.msg, record.args = mask_personal_data(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
            record.exc_info = None  # the masked text is what gets printed
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask_personal_data(value))
        return True


# ---- request ids and JSON lines ---------------------------------------------------------------

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("volbot_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in line and not key.startswith("_"):
                line[key] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def json_handler(stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PersonalDataFilter())
    return handler


def configure_logging(json_lines: bool = False, level: int = logging.INFO, stream=None) -> None:
    """Route every log record through one handler: JSON lines (`VOLBOT_LOG_FORMAT=json`)
    or plain text; personal data is masked either way."""
    root = logging.getLogger()
    if json_lines:
        handler = json_handler(stream)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(PersonalDataFilter())
    for old in list(root.handlers):
        if getattr(old, "_volbot", False):
            root.removeHandler(old)
    handler._volbot = True
    if json_lines:  # JSON lines replace whatever basicConfig put there
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


# ---- metrics ----------------------------------------------------------------------------------

# The series themselves are defined in `telemetry.metrics`, below every package that counts.
from telemetry.metrics import (  # noqa: E402,F401 - re-exported: the shell counts through this module
    API_ERRORS_KEY,
    BUSY,
    DEDUP_HITS,
    LOCK_WAIT_SECONDS,
    LOCK_WAITS,
    QUEUE_SECONDS,
    RECEIPTS_REJECTED,
    REGISTRY,
    REPLY_SECONDS,
    REQUESTS,
    SHED,
    count_api_error,
)


class DeploymentCollector:
    """Gauges read at scrape time from the shared Redis and SQL (see module doc)."""

    def __init__(self, services):
        self.services = services

    def collect(self):
        queue = GaugeMetricFamily("volbot_queue_depth", "Jobs waiting in the push queue", labels=["queue"])
        api = CounterMetricFamily("volbot_wechat_api_errors", "Failed WeChat API calls by endpoint and errcode "
                                  "(network = no answer), all workers", labels=["endpoint", "code"])
        try:
            from pushes.worker import QUEUE_NAME, push_queue

            queue.add_metric([QUEUE_NAME], push_queue(self.services.redis).count)
            for field, n in self.services.redis.hgetall(API_ERRORS_KEY).items():
                endpoint, _, code = field.decode().partition("|")
                api.add_metric([endpoint, code], int(n))
        except Exception as e:  # noqa: BLE001 - Redis down: say so in the scrape, do not fail it
            log.warning("metrics: Redis unreadable (%s)", type(e).__name__)
        yield queue
        yield api
        pushes = GaugeMetricFamily("volbot_pushes", "Push rows by state", labels=["state"])
        dead = GaugeMetricFamily("volbot_dead_letters", "Queue items set aside because they failed on their own "
                                 "(store.dead_letters; list them with `volbot push dead-letters`)", labels=["queue"])
        try:
            from pushes.worker import status
            from store.dead_letters import counts

            with self.services.db.transaction() as session:
                for state, n in sorted(status(session).items()):
                    pushes.add_metric([state], n)
                for queue_name, n in sorted(counts(session).items()):
                    dead.add_metric([queue_name], n)
        except Exception as e:  # noqa: BLE001 - database down: say so in the log, do not fail the scrape
            log.warning("metrics: database unreadable (%s)", type(e).__name__)
        yield pushes
        yield dead


def render_metrics(services) -> bytes:
    registry = CollectorRegistry()
    if services.config.metrics_dir:  # several gunicorn workers: summed from their files
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(DeploymentCollector(services))
    return generate_latest(registry)


class _Forward:
    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        return self.source.collect()


# ---- the Flask side ------------------------------------------------------------------------------

def install(app, services) -> None:
    """Request ids, JSON logs when asked for, request metrics and `/metrics` on `app`."""
    from flask import Response, g, request

    if services.config.log_format == "json":
        configure_logging(json_lines=True)

    @app.before_request
    def _start():
        incoming = request.headers.get("X-Request-Id", "")
        rid = incoming if re.fullmatch(r"[A-Za-z0-9._-]{8,64}", incoming) else uuid.uuid4().hex[:16]
        g.volbot_request_token = request_id.set(rid)
        g.volbot_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        response.headers["X-Request-Id"] = request_id.get() or ""
        if request.path == "/wechat" and request.method == "POST":
            outcome = g.get("volbot_outcome")
            if response.status_code >= 400:
                outcome = f"rejected_{response.status_code}" if response.status_code < 500 else "error"
            elif outcome is None:
                outcome = "ack" if response.get_data() == b"success" else "reply"
            REQUESTS.labels(outcome).inc()
            REPLY_SECONDS.observe(time.perf_counter() - g.get("volbot_started", time.perf_counter()))
        return response

    @app.teardown_request
    def _clear(_exc):
        token = g.pop("volbot_request_token", None)
        if token is not None:
            request_id.reset(token)

    @app.get("/metrics")
    def metrics():
        return Response(render_metrics(services), mimetype=CONTENT_TYPE_LATEST)


def note_outcome(outcome: str) -> None:
    """The webhook says what a POST came to when the status code cannot (busy)."""
    from flask import g

    g.volbot_outcome = outcome
