"""What the benchmark scripts share about a local cluster they made."""
import os
import signal
import time


def kill_leftovers(cluster):
    """Kill whatever is left of the local cluster in directory `cluster`: every process whose
    command line names it (peers) or whose working directory is under it (applications)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cluster in cmd or cwd.startswith(cluster):
            os.kill(int(pid), signal.SIGKILL)


def wait(what, cond, timeout=600):
    """Poll `cond` every half second until it holds; exit naming `what` after `timeout` s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")
