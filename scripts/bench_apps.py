#!/usr/bin/env python3
"""Benchmark of issue 6 on a real local cluster: an application state change on one machine,
visible in `app status` asked of a different peer, in rounds.

Usage: cargo build --release -p smon-peer -p smon-console && python3 scripts/bench_apps.py [N] [INTERVAL_S] [TRIALS]

N local machines run a tiny application (`exec sleep ...`), online. Each trial kills its process
on one machine (never the first, which answers `status`) and polls `app status --json` (answered
by the first machine's peer) until that machine's row shows the change (a state other than
running, or one more restart). The time from the kill is divided by the round interval.
"""
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from local_cluster import kill_leftovers, wait

N = int(sys.argv[1]) if len(sys.argv) > 1 else 117
INTERVAL = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
TRIALS = int(sys.argv[3]) if len(sys.argv) > 3 else 20
CONSOLE = os.path.abspath("target/release/smon-console")


def console(*args, check=True):
    out = subprocess.run([CONSOLE, "-C", CLUSTER, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"smon-console {args}: {out.stderr}")
    return out.stdout


def status():
    out = subprocess.run([CONSOLE, "-C", CLUSTER, "app", "status", "--json"], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def row(s, name):
    for r in s["rows"] if s else []:
        if r["machine"] == f"local:{name}" and r["app"] == "sleeper":
            return r
    return None


def app_pid(name):
    base = os.path.realpath(f"{CLUSTER}/machines.d/{name}/apps/sleeper")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            # The peer's runner (smon-peer app-run) works there too: the application is its child.
            runner = open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"smon-peer\0app-run\0")
            if os.readlink(f"/proc/{pid}/cwd").startswith(base + "/") and not runner:
                return int(pid)
        except OSError:
            pass
    return None


tmp = tempfile.mkdtemp(prefix="smon-bench-apps-")
CLUSTER = f"{tmp}/cluster"
names = [f"m{i:03}" for i in range(1, N + 1)]
with open(f"{tmp}/machines", "w") as f:
    f.writelines(f"local:{n}\n" for n in names)
subprocess.run([CONSOLE, "init", CLUSTER, "--machines", f"{tmp}/machines", "--interval", f"{int(INTERVAL * 1000)}ms"],
               check=True, capture_output=True)
app = f"{tmp}/sleeper"
os.makedirs(app)
with open(f"{app}/app.toml", "w") as f:
    f.write('name = "sleeper"\nversion = "1.0.0"\nstart = "exec sleep 1000000"\n')
try:
    print(f"{N} local machines, {INTERVAL} s rounds, {os.cpu_count()} cores; goal log2(N) + 2 = "
          f"{math.log2(N) + 2:.2f} rounds")
    console("deploy")
    console("wait", "--deployed", "all", "--timeout", "600s")
    t0 = time.time()
    console("app", "install", app)
    wait("the application running everywhere",
         lambda: (s := status()) and sum(1 for r in s["rows"] if r["state"] == "running") == N)
    print(f"installed and running on all {N} in {time.time() - t0:.1f} s (as seen by one peer)")
    # Let the rumors of the cluster-wide start die down (steady state), measuring what the
    # peers cost meanwhile (each supervises one running application).
    time.sleep(10 * INTERVAL)
    pids = []
    for n in names:
        try:
            pids.append(int(open(f"{CLUSTER}/machines.d/{n}/peer.pid").read()))
        except (OSError, ValueError):
            pass
    ticks = os.sysconf("SC_CLK_TCK")

    def cpu(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    before = {p: cpu(p) for p in pids}
    time.sleep(20)
    use = sorted((cpu(p) - before[p]) / ticks / 20 * 100 for p in pids)
    print(f"peer CPU with one supervised application: median {statistics.median(use):.2f}% of a core, "
          f"max {use[-1]:.2f}%")
    rounds = []
    random.seed(1)
    for trial in range(TRIALS):
        victim = random.choice(names[1:])
        before = row(status(), victim)
        pid = app_pid(victim)
        if before is None or before["state"] != "running" or pid is None:
            raise SystemExit(f"{victim}: not running before the trial: {before}")
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        while True:
            r = row(status(), victim)
            if r and (r["state"] != "running" or r["restarts"] != before["restarts"]):
                break
            if time.time() - t_kill > 120:
                raise SystemExit(f"{victim}: the change never showed")
        took = (time.time() - t_kill) / INTERVAL
        rounds.append(took)
        print(f"trial {trial + 1}: {victim} killed; {r['state']} (restarts {r['restarts']}) seen via m001 after "
              f"{took:.2f} rounds")
        wait(f"{victim} running again", lambda: (r := row(status(), victim)) and r["state"] == "running"
             and r["restarts"] > before["restarts"])
        time.sleep(5 * INTERVAL)
    print(f"rounds until visible: median {statistics.median(rounds):.2f}, mean {statistics.mean(rounds):.2f}, "
          f"max {max(rounds):.2f} over {len(rounds)} trials (goal {math.log2(N) + 2:.2f})")
finally:
    subprocess.run([CONSOLE, "-C", CLUSTER, "app", "set", "sleeper", "offline"], capture_output=True)
    time.sleep(5 * INTERVAL)
    subprocess.run([CONSOLE, "-C", CLUSTER, "shutdown", "--timeout", "120s"], capture_output=True)
    # Whatever is left of this cluster (peers, applications): killed.
    kill_leftovers(CLUSTER)
