"""Every Prometheus series of the service, in one registry, and the deployment-wide count of
WeChat API errors kept in Redis.

Defined here, at the bottom, so that the webhook, the web server, the push worker and the
rules count into the same registry without importing the shell; `bot.observability` serves
them at `/metrics` (summed over gunicorn's workers in prometheus_client's multiprocess mode).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("volbot_requests", "Webhook POSTs by outcome: reply, ack (success), busy, "
                   "rejected_<status>, error", ["outcome"], registry=REGISTRY)
REPLY_SECONDS = Histogram("volbot_reply_seconds", "Time from request to reply on POST /wechat",
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 4.5, 5.0),
                          registry=REGISTRY)
DEDUP_HITS = Counter("volbot_dedup_hits", "Retried deliveries answered from the dedup cache "
                     "(or waited for the first delivery)", registry=REGISTRY)
LOCK_WAITS = Counter("volbot_lock_waits", "Turns that had to wait for the user's lock", ["result"],
                     registry=REGISTRY)
LOCK_WAIT_SECONDS = Histogram("volbot_lock_wait_seconds", "How long a turn waited for the user's lock",
                              buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 4.5), registry=REGISTRY)
BUSY = Counter("volbot_busy_replies", "系统繁忙 replies by reason (deadline, error)", ["reason"],
               registry=REGISTRY)
RECEIPTS_REJECTED = Counter("volbot_receipts_rejected", "Delivery receipts dropped at intake: their MsgID "
                            "cannot be one of ours (rules.receipts)", registry=REGISTRY)

LOGIN_FAILURES = Counter("volbot_console_login_failures", "Refused console logins by reason: password "
                         "(wrong password, unknown or disabled account), second_factor, throttled",
                         ["reason"], registry=REGISTRY)

# Counted by the web server (bot/gunicorn_worker.py), before the app: requests refused unread,
# and the wait of those served. Reasons: late (waited past VOLBOT_QUEUE_BUDGET), overload (waited
# past the short wait allowed while the queue has not emptied for a whole budget), connections
# (the first request of a connection taken beyond worker_connections).
SHED = Counter("volbot_shed", "Requests refused unread (503) before the app, by path (wechat, other) and "
               "reason (late, overload, connections)", ["path", "reason"], registry=REGISTRY)
QUEUE_SECONDS = Histogram("volbot_queue_seconds", "Time a whole request waited in the web worker before the app",
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.5),
                          registry=REGISTRY)

API_ERRORS_KEY = "volbot:metrics:wechat_api_errors"


def count_api_error(redis_client, endpoint: str, code: int | None) -> None:
    """Count one failed WeChat API call (any process, any host). Never raises: losing a
    count must not turn into losing a push."""
    try:
        redis_client.hincrby(API_ERRORS_KEY, f"{endpoint}|{'network' if code is None else code}", 1)
    except Exception:  # noqa: BLE001 - a lost count must not lose the push
        pass
