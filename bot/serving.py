"""How `volbot serve` sizes and lays out its web processes: the number of workers, the
worker class for a number of threads, whether each worker gets a socket of its own, and the
folders the workers share (Prometheus counters, ready marks). Pure functions of the
configuration: `bot/gunicorn_conf.py` applies them, tests and benches read them.
"""

from __future__ import annotations

import os
from pathlib import Path

from bot.config import Config


def default_workers(cores: int | None = None) -> int:
    """One process per core and one more for the moments they wait on Redis and SQL (at
    least 3, so that two are there while another restarts; at most 13)."""
    cores = cores or os.cpu_count() or 1
    return max(3, min(13, cores + 1))


def worker_class_for(threads: int) -> str:
    """One thread: each worker reads and serves its requests on its event loop
    (bot/gunicorn_worker.py, `BufferedWorker`). More: gunicorn's gthread pool of that many
    threads, behind the same loop."""
    return "bot.gunicorn_worker.BufferedWorker" if threads <= 1 else "bot.gunicorn_worker.BalancedThreadWorker"


def reuse_port_for(binds: list[str], wanted: bool = True) -> bool:
    """A listening socket per worker (SO_REUSEPORT, see bot/gunicorn_worker.py) for TCP
    binds; a unix socket or an inherited fd is one shared listener. VOLBOT_REUSE_PORT=0
    turns it off."""
    return wanted and all(not b.startswith(("unix:", "fd://")) for b in binds)


def metrics_dir(config: Config) -> Path:
    """Where the web processes keep their Prometheus counters (multiprocess mode)."""
    return Path(config.metrics_dir) if config.metrics_dir else config.instance_path / "prometheus"


def ready_dir(config: Config) -> Path:
    """Where each worker says it has loaded the app and listens (`volbot serve` waits for
    it on HUP; the drills wait for every worker before they start)."""
    return metrics_dir(config).parent / "gunicorn-ready"
