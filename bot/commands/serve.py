"""`volbot serve`: the production web server — gunicorn with `bot/gunicorn_conf.py`.

This process becomes gunicorn's master (so systemd's signals reach it: HUP reloads
gracefully, TERM stops after in-flight requests, see deploy/). Before any worker starts, the
configuration and both backends are checked once, in a child process, so a mistake is one
line and exit status 2 instead of workers dying in a loop — and the master itself imports
none of the application, which keeps a HUP reload a real code reload.
"""

from __future__ import annotations

import subprocess
import sys
import time

import click

_CHECK = "from bot.cli import build_services; build_services().close()"


def _check_configuration(env: dict) -> None:
    done = subprocess.run([sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        message = lines[-1] if lines else f"configuration check failed ({done.returncode})"
        if message.startswith("bot.config.ConfigError: "):
            message = message[len("bot.config.ConfigError: "):]
        click.echo(f"volbot: {message}", err=True)
        sys.exit(2)


def _gunicorn_app(overrides: dict):
    """gunicorn's BaseApplication over `bot.wsgi:app`, configured from bot.gunicorn_conf
    and then `overrides` (the command's options)."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    class GentleArbiter(Arbiter):
        """On HUP, old workers are stopped only once the new ones have loaded the app (or
        after READY_WAIT seconds, if one never does): no request waits for a worker."""

        READY_WAIT = 60.0

        def manage_workers(self):
            if len(self.WORKERS) > self.num_workers and not self._newest_ready():
                return
            super().manage_workers()

        def _newest_ready(self) -> bool:
            from bot.config import load_config
            from bot.serving import ready_dir

            started = getattr(self, "_reload_started", None)
            if started is None:
                return True
            newest = sorted(self.WORKERS.items(), key=lambda w: w[1].age)[-self.num_workers:]
            ready = ready_dir(load_config())
            if all((ready / str(pid)).exists() for pid, _ in newest) or (
                    time.monotonic() - started > self.READY_WAIT):
                self._reload_started = None
                return True
            return False

        def reload(self):
            self._reload_started = time.monotonic()
            super().reload()

    class VolbotServer(BaseApplication):
        def load_config(self):
            from bot import gunicorn_conf

            for name in dir(gunicorn_conf):
                if name in self.cfg.settings and not name.startswith("_"):
                    self.cfg.set(name, getattr(gunicorn_conf, name))
            for name, value in overrides.items():
                self.cfg.set(name, value)

        def load(self):
            from bot.wsgi import app  # in the worker, after the fork

            return app

        def run(self):
            GentleArbiter(self).run()

    return VolbotServer()


def register(main: click.Group) -> None:
    @main.command()
    @click.option("--bind", "-b", multiple=True, envvar="VOLBOT_BIND",
                  help="host:port or unix:PATH (repeatable; env VOLBOT_BIND, default 127.0.0.1:8000).")
    @click.option("--workers", "-w", type=int, envvar="WEB_CONCURRENCY",
                  help="Worker processes (env WEB_CONCURRENCY; default one per core plus one, at least 3).")
    @click.option("--threads", type=int, envvar="VOLBOT_THREADS", help="Threads per worker: 1 (default) serves on each worker's event loop, more use gthread's pool.")
    @click.option("--worker-connections", type=click.IntRange(1), default=None,
                  help="Connections a worker serves (default 1000); the first request of each one beyond is "
                       "refused with 503 and closed.")
    @click.option("--access-log/--no-access-log", default=None, help="Log each request (path only, no query).")
    @click.option("--control-socket", default=None, metavar="PATH",
                  help="Enable gunicorn's control socket at PATH (off by default).")
    @click.option("--pid", "pidfile", default=None, metavar="FILE", help="Write the master's pid to FILE.")
    def serve(bind, workers, threads, worker_connections, access_log, control_socket, pidfile):
        """Serve the webhook, console and /metrics with gunicorn (production)."""
        from bot.config import child_environ, environ_value, export, load_config

        config = load_config()  # a ConfigError here is the usual one line
        # The workers read their configuration from the environment gunicorn hands them.
        export(VOLBOT_INSTANCE=str(config.instance_path), VOLBOT_LOG_FORMAT=environ_value("VOLBOT_LOG_FORMAT") or "json")
        embedded = None
        if not config.redis_url:  # development: one embedded Redis shared by every worker
            from store.redis import resolve_url

            url, embedded = resolve_url(None, config.instance_path)
            export(REDIS_URL=url)
        try:
            _check_configuration(child_environ())
            overrides = {}
            if bind:
                from bot.serving import reuse_port_for

                overrides["bind"] = [b for item in bind for b in item.split(",") if b]
                export(VOLBOT_BIND=",".join(overrides["bind"]))  # the workers' config (the simulator's target)
                overrides["reuse_port"] = reuse_port_for(overrides["bind"], config.reuse_port)
            if workers:
                overrides["workers"] = workers
            if threads:
                from bot.serving import worker_class_for

                overrides.update(threads=threads, worker_class=worker_class_for(threads))
            if worker_connections:
                overrides["worker_connections"] = worker_connections
            if access_log is not None:  # read by bot.gunicorn_conf (it also sets the log level)
                export(VOLBOT_ACCESS_LOG="1" if access_log else "0")
            if control_socket:
                overrides.update(control_socket_disable=False, control_socket=control_socket)
            if pidfile:
                overrides["pidfile"] = pidfile
            sys.argv = [sys.argv[0]]  # gunicorn must not read volbot's own arguments
            _gunicorn_app(overrides).run()
        finally:
            if embedded is not None:
                embedded.shutdown()
