"""Child processes of the sandbox: started with a death signal, stopped by PID."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def pdeathsig_preexec() -> None:
    """In the child: die with SIGKILL if the sandbox process dies first."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(name: str, argv: list[str], log_dir: Path, env: dict | None = None) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = (log_dir / f"{name}.log").open("ab")
    try:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, preexec_fn=pdeathsig_preexec, start_new_session=True,
        )
    finally:
        out.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop(procs: list[subprocess.Popen], timeout: float = 5) -> None:
    """SIGTERM every process group at once, SIGKILL what is left after `timeout`."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait(5)


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
