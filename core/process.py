"""Child processes that die with their parent.

torchrun puts every rank in a session of its own, so a signal to the pipeline's process group
never reaches them, and a SIGKILL of the pipeline (or of torchrun) would leave ranks hanging in
init_process_group or training on. Linux's parent-death signal (prctl PR_SET_PDEATHSIG) closes
that: the launcher gets SIGTERM when the process that started it exits, however it exits, and
each rank when its launcher does. Elsewhere these are no-ops.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None, sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent exits. `expected_parent`: the
    parent's pid as the caller knew it; if it is gone already (the race between fork and prctl),
    the signal is sent now."""
    if sys.platform != "linux":
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return  # not allowed here (a restricted sandbox): the process lives on as before
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), sig)


def dies_with_this_process():
    """A Popen `preexec_fn`: the child gets SIGTERM when this process exits."""
    parent = os.getpid()
    return lambda: die_with_parent(parent)


def stop_process(process, timeout_s: float = 30) -> None:
    """SIGTERM a Popen child (torchrun passes it on to its ranks), SIGKILL after `timeout_s`."""
    import subprocess

    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
