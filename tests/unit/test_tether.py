"""A tethered process ends with its owner, however the owner ends, and only it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from retailstream.tether import _stop, start_ticks

# An owner: starts `sleep` in a session of its own (as the demo starts its broker),
# tethers it, says its pid, then waits on stdin until told to release or killed.
OWNER = """
import subprocess, sys
from retailstream.tether import tether
target = subprocess.Popen(["sleep", "600"], start_new_session=True)
held = tether(target.pid, grace_s=5)
print(target.pid, flush=True)
if sys.stdin.readline().strip() == "release":
    target.terminate(); target.wait(); held.release()
    print("released", held._watcher.returncode, flush=True)
    sys.stdin.readline()
"""


def _owner() -> tuple[subprocess.Popen[str], int]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    return owner, int(owner.stdout.readline())


def _gone_within(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while start_ticks(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_tethered_process_ends_when_its_owner_is_killed() -> None:
    owner, target = _owner()
    assert start_ticks(target) is not None
    owner.kill()  # SIGKILL: the owner runs no code of its own on the way out
    owner.wait()
    assert _gone_within(target, 30), f"process {target} outlived its killed owner"


def test_a_released_tether_lets_its_watcher_go() -> None:
    owner, target = _owner()
    assert owner.stdin is not None and owner.stdout is not None
    owner.stdin.write("release\n")
    owner.stdin.flush()
    assert owner.stdout.readline().split() == ["released", "0"]  # the watcher has exited
    owner.kill()
    owner.wait()
    assert start_ticks(target) is None


def test_the_watcher_never_signals_a_process_that_reused_the_pid() -> None:
    other = subprocess.Popen(["sleep", "600"])
    try:
        ticks = start_ticks(other.pid)
        assert ticks is not None
        _stop(other.pid, ticks + 1, signal.SIGTERM, grace_s=0.1)  # a start time not its own
        assert other.poll() is None and start_ticks(other.pid) == ticks
        _stop(other.pid, ticks, signal.SIGTERM, grace_s=5)  # its own: stopped
        assert other.wait(5) == -signal.SIGTERM
    finally:
        if other.poll() is None:
            os.kill(other.pid, signal.SIGKILL)
