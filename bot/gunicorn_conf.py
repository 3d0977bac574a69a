"""gunicorn settings for the web processes (`volbot serve`, or
`gunicorn -c python:bot.gunicorn_conf bot.wsgi:app` by hand).

Every value comes from the configuration (bot/config.py: VOLBOT_BIND, WEB_CONCURRENCY,
VOLBOT_THREADS, …) or from `volbot serve`'s options. Importing this file has effects (it
exports what prometheus_client and the workers read): only gunicorn loads it; the helpers
are in `bot.serving`. The reasoning:

- `BufferedWorker` workers (bot/gunicorn_worker.py), one per core plus one: each reads
  requests whole on its own event loop (a slow client costs a socket, not the worker),
  serves them one at a time with no hand-off to a thread pool, and refuses unread those
  that waited past VOLBOT_QUEUE_BUDGET since they reached the host. A turn
  is about 2 ms of Python with a few short waits on Redis and SQL; the extra process
  keeps the cores busy through those waits, while more processes only preempt each other
  on a 2-core host shared with PostgreSQL and Redis (bench/load.py at 500 pushes/s: 2
  workers fell behind, waiting; 3 and 4 held the rate at the same 2.4 ms of web CPU per
  push, p99 0.36-0.42 s; before this worker, gthread's 2 workers x 2 threads needed 3.1
  ms with the code of then and fell behind). With the database across a network turns
  wait longer: raise WEB_CONCURRENCY. `--threads N` above 1 (VOLBOT_THREADS) brings back
  gthread's pool of N threads per worker.
  Each worker listens on a socket of its own (`reuse_port`, bot/gunicorn_worker.py): with
  one shared socket a single worker took almost every kept-alive connection. The workers
  also keep even shares of the connections (`ConnectionShare`, same module).
- WeChat gives up on a reply after 5 s. The pipeline answers by `REPLY_DEADLINE` (4.5 s)
  whatever happens, so `timeout` here is only gunicorn's watchdog for a *stuck* worker
  (no heartbeat): long enough never to kill a worker that is merely busy.
- `keepalive` is longer than the upstream keep-alive of the nginx site in deploy/, so nginx
  (not gunicorn) closes idle connections and never sends a request into a closing one.
- HUP: gunicorn re-reads this file, starts new workers (which import the code afresh: the
  app is not preloaded) and lets the old ones finish their requests (`graceful_timeout`).
  Plain gunicorn stops the old workers at once, before the new ones have loaded the app,
  and requests wait in the backlog for seconds; `volbot serve` keeps the old ones serving
  until every new worker listens (it says so in `ready_dir()`, bot/gunicorn_worker.py).
- No control socket: we steer by signals (systemd's `ExecReload=kill -HUP`), and two
  instances on one host would clash on the default socket path.
- The access log, when on, leaves the query string out: WeChat puts the openid there.
"""

from __future__ import annotations

import shutil

from bot.config import environ_value, export, load_config
from bot.serving import default_workers, metrics_dir, ready_dir, reuse_port_for, worker_class_for

_config = load_config()

# prometheus_client chooses its storage when first imported, so this must be set before any
# worker imports it; workers inherit the master's environment and read their configuration
# from it. Logs are JSON lines under gunicorn unless the operator chose text.
export(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir(_config)),
       VOLBOT_LOG_FORMAT=environ_value("VOLBOT_LOG_FORMAT") or "json")
metrics_dir(_config).mkdir(parents=True, exist_ok=True)

bind = [b.strip() for b in _config.bind.split(",") if b.strip()]
reuse_port = reuse_port_for(bind, _config.reuse_port)
workers = _config.web_workers or default_workers()
threads = _config.threads
worker_class = worker_class_for(threads)
timeout = _config.worker_timeout
graceful_timeout = _config.graceful_timeout
keepalive = _config.keepalive
# Recycling a worker after N requests (VOLBOT_MAX_REQUESTS) bounds slow leaks, but it is
# off by default: with a socket per worker, workers that recycle at the same moment leave
# the port with no listener for the second a new one takes to load, and connections are
# refused (seen in bench/webhook.py with 2 workers). If you set it, the wide jitter keeps
# the workers' turns apart; use it with 3 or more workers.
max_requests = _config.max_requests
max_requests_jitter = max_requests // 2
control_socket_disable = True
preload_app = False
forwarded_allow_ips = _config.forwarded_allow_ips
logger_class = "bot.gunicorn_worker.Logger"
accesslog = "-" if _config.access_log else None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"personal_data": {"()": "bot.observability.PersonalDataFilter"}},
    "formatters": {"json": {"()": "bot.observability.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "filters": ["personal_data"],
                             "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        # gunicorn logs access lines whenever a logging config is given: the level decides.
        "gunicorn.access": {"level": "INFO" if accesslog else "WARNING", "handlers": ["console"],
                            "propagate": False},
    },
}


def on_starting(server):
    """Master start (not a HUP reload): counters of an earlier run are stale, start empty."""
    for folder in (metrics_dir(_config), ready_dir(_config)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker):
    """A worker is gone: its live gauges no longer count (its counters still do)."""
    from prometheus_client import multiprocess

    from bot.gunicorn_worker import SHARE

    multiprocess.mark_process_dead(worker.pid)
    (ready_dir(_config) / str(worker.pid)).unlink(missing_ok=True)
    SHARE.release(getattr(worker, "share_slot", -1))

