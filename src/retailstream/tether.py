"""A server process that ends with the process that started it, even a SIGKILLed one.

The demo starts its Kafka broker in a session of its own, so that a terminal's
Ctrl-C reaches the demo first and the demo stops the broker in order. But then
nothing stops the broker if the demo is killed. `tether(pid)` starts a small
watcher (this module's `main`) that reads a pipe whose only writer is this
process. The kernel closes the writer when this process ends, however it ends;
the watcher then reads end-of-file and stops the tethered process: `stop_signal`
to its process group, SIGKILL after a grace period. `Tether.release()` closes the
pipe too, after the owner has stopped the process itself: the watcher finds it
gone and exits. The watcher identifies the process by its pid and start time,
so a pid reused by another process is never signalled.

    python -m retailstream.tether PID START_TICKS SIGNAL GRACE_S   (stdin: the pipe)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc's field 22); None: no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


class Tether:
    """The owner's end of a tether: the pipe's writer, and the watcher process."""

    def __init__(self, writer: int, watcher: subprocess.Popen[bytes]) -> None:
        self._writer: int | None = writer
        self._watcher = watcher

    def release(self, timeout_s: float = 10.0) -> None:
        """Let the watcher go (the owner stopped the process itself). Safe to call twice."""
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._watcher.wait(timeout_s)


def tether(pid: int, stop_signal: signal.Signals = signal.SIGTERM, grace_s: float = 15.0) -> Tether:
    """Stop process `pid` (and its process group) when this process ends."""
    ticks = start_ticks(pid)
    if ticks is None:
        raise ProcessLookupError(f"no process {pid} to tether")
    reader, writer = os.pipe()  # not inherited by other children: Python's fds are CLOEXEC
    try:
        watcher = subprocess.Popen(
            [sys.executable, "-m", __name__, str(pid), str(ticks), stop_signal.name, str(grace_s)],
            stdin=reader,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the owner's group leaves it watching
        )
    except BaseException:
        os.close(writer)
        raise
    finally:
        os.close(reader)
    return Tether(writer, watcher)


def _stop(pid: int, ticks: int, stop_signal: signal.Signals, grace_s: float) -> None:
    """`stop_signal` to `pid` (to its group when it leads one: a server's workers), then
    SIGKILL after `grace_s`, while `pid` is still the process it was."""
    for sig, wait_s in ((stop_signal, grace_s), (signal.SIGKILL, 5.0)):
        if start_ticks(pid) != ticks:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while start_ticks(pid) == ticks and time.monotonic() < deadline:
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    pid, ticks, name, grace_s = int(argv[0]), int(argv[1]), argv[2], float(argv[3])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while os.read(0, 4096):  # nothing is ever written: this returns b"" once the writer closes
        pass
    _stop(pid, ticks, signal.Signals[name], grace_s)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
