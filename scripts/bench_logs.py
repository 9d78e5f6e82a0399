#!/usr/bin/env python3
"""Benchmark of issue 16's `logs` goal on a real local cluster: `logs MACHINE APP -n 100`
through a peer that is not the target (the request relayed once over Noise), against the same
read asked of the target's own peer, side by side in one run.

Usage: cargo build --release -p smon-peer -p smon-console && python3 scripts/bench_logs.py [N] [TRIALS]

N local machines (1 s rounds) run a small application that writes 5,000 lines to its log and
sleeps. Each trial runs the whole `smon-console` process (start, read the cluster directory,
connect, ask, print), alternately through local:m001 (relayed) and through the target itself
(direct), for a target drawn from the other machines. Goal: relayed <= 1 s.
"""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from local_cluster import kill_leftovers, wait

N = int(sys.argv[1]) if len(sys.argv) > 1 else 60
TRIALS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
CONSOLE = os.path.abspath("target/release/smon-console")


def console(*args):
    out = subprocess.run([CONSOLE, "-C", CLUSTER, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"smon-console {args}: {out.stderr}")
    return out.stdout


def app_log(name):
    return f"{CLUSTER}/machines.d/{name}/apps/talker/app.log"


def lines_in(path):
    try:
        with open(path) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


tmp = tempfile.mkdtemp(prefix="smon-bench-logs-")
CLUSTER = f"{tmp}/cluster"
names = [f"m{i:03}" for i in range(1, N + 1)]
with open(f"{tmp}/machines", "w") as f:
    f.writelines(f"local:{n}\n" for n in names)
subprocess.run([CONSOLE, "init", CLUSTER, "--machines", f"{tmp}/machines", "--interval", "1s"],
               check=True, capture_output=True)
app = f"{tmp}/talker"
os.makedirs(app)
with open(f"{app}/app.toml", "w") as f:
    f.write('name = "talker"\nversion = "1.0.0"\n'
            'start = "seq -f \\"line %g of the talker on $SMON_MACHINE\\" 5000; exec sleep 1000000"\n')
try:
    print(f"{N} local machines, 1 s rounds, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start")
    console("deploy")
    console("wait", "--deployed", "all", "--timeout", "600s")
    console("app", "install", app)
    wait("the talker's log everywhere", lambda: all(lines_in(app_log(n)) >= 5000 for n in names))
    time.sleep(5)
    random.seed(1)
    took = {"relayed": [], "direct": []}
    for trial in range(TRIALS):
        target = random.choice(names[1:])
        for how, via in (("relayed", "m001"), ("direct", target)):
            t0 = time.time()
            out = console("--via", f"local:{via}", "logs", f"local:{target}", "talker", "-n", "100")
            took[how].append(time.time() - t0)
            if out.count("\n") != 100 or f"line 5000 of the talker on local:{target}" not in out:
                raise SystemExit(f"{how} {target}: wrong output:\n{out}")
    for how, times in took.items():
        times.sort()
        print(f"logs MACHINE talker -n 100, {how}: median {statistics.median(times) * 1000:.0f} ms, "
              f"p90 {times[int(len(times) * 0.9) - 1] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms "
              f"over {len(times)} runs (goal relayed <= 1000 ms)")
    print(f"load {os.getloadavg()[0]:.2f} at the end")
finally:
    subprocess.run([CONSOLE, "-C", CLUSTER, "shutdown", "--timeout", "120s"], capture_output=True)
    # Whatever is left of this cluster (peers, applications): killed.
    kill_leftovers(CLUSTER)
