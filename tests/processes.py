"""Helpers for tests that run real processes: stopping a process group as Ctrl-C would."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGINT to `proc`'s process group (what one Ctrl-C does to `volbot demo`), then SIGKILL
    if it has not ended within `timeout` seconds."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
