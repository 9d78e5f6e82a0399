#!/usr/bin/env python3
"""Benchmark a real local cluster (issue 4 goals): deployment rounds, overhead, restart time,
idle peer RSS and CPU, package size.

The deployment numbers come from `smon-console demo --machines N --headless --json` (a
temporary cluster, deployed, summed up and shut down), RUNS times; the rest needs a cluster
that stays up, so the script makes one of its own for it.

Usage: cargo build --release -p smon-peer -p smon-console && python3 scripts/bench_local.py [N] [INTERVAL_S] [RUNS]
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 117
INTERVAL = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
CONSOLE = os.path.abspath("target/release/smon-console")
TICKS = os.sysconf("SC_CLK_TCK")


def console(*args, check=True):
    out = subprocess.run([CONSOLE, "-C", CLUSTER, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"smon-console {args}: {out.stderr}")
    return out.stdout


def pid_of(name):
    try:
        pid = int(open(f"{CLUSTER}/machines.d/{name}/peer.pid").read())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def demo():
    """One headless demo: its JSON summary."""
    out = subprocess.run([CONSOLE, "demo", "--machines", str(N), "--interval", f"{int(INTERVAL * 1000)}ms",
                          "--headless", "--json", "--timeout", "600s"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"smon-console demo: {out.stderr}")
    return json.loads(out.stdout)


print(f"{N} local machines, {INTERVAL} s rounds, {os.cpu_count()} cores")
runs = [demo() for _ in range(RUNS)]
for d in runs:
    print(f"deployed {d['deployed']}/{d['machines']} in {d['seconds']:.1f} s: last peer started {d['rounds']:.1f} rounds "
          f"after the first (p50 {d['rounds_p50']:.1f}, p90 {d['rounds_p90']:.1f}); "
          f"overhead: mean {d['overhead_mean']:.3f}, max {d['overhead_max']}")
if RUNS > 1:
    rounds = [d["rounds"] for d in runs]
    print(f"rounds over {RUNS} runs: mean {statistics.mean(rounds):.1f}, min {min(rounds):.1f}, max {max(rounds):.1f}")
gz = runs[0]["package_gzip_bytes"]
print(f"package: {gz / 1e6 if gz else float('nan'):.2f} MB as copied to SSH machines (gzip; local machines get it as is), "
      f"{runs[0]['package_bytes'] / 1e6:.2f} MB installed")

tmp = tempfile.mkdtemp(prefix="smon-bench-")
CLUSTER = f"{tmp}/cluster"
names = [f"m{i:03}" for i in range(1, N + 1)]
with open(f"{tmp}/machines", "w") as f:
    f.writelines(f"local:{n}\n" for n in names)
subprocess.run([CONSOLE, "init", CLUSTER, "--machines", f"{tmp}/machines", "--interval", f"{int(INTERVAL * 1000)}ms"],
               check=True, capture_output=True)
try:
    console("deploy")
    console("wait", "--deployed", "all", "--timeout", "600s")

    # Idle cost: RSS and CPU of every peer over 20 s.
    pids = [p for p in (pid_of(n) for n in names) if p]
    before = {p: cpu_ticks(p) for p in pids}
    time.sleep(20)
    cpu = [(cpu_ticks(p) - before[p]) / TICKS / 20 * 100 for p in pids]
    rss = [rss_kb(p) / 1024 for p in pids]
    print(f"idle peer: RSS median {statistics.median(rss):.1f} MB, max {max(rss):.1f} MB; "
          f"CPU median {statistics.median(cpu):.2f}% of a core, max {max(cpu):.2f}%")

    # Watching: the TUI in tmux (120x40) for 30 s, its CPU.
    if subprocess.run(["which", "tmux"], capture_output=True).returncode == 0:
        sock = f"smon-bench-{os.getpid()}"
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "120", "-y", "40",
                        f"{CONSOLE} -C {CLUSTER} tui"], check=True)
        time.sleep(3)
        tui = [int(p) for p in subprocess.run(["pgrep", "-f", f"^{CONSOLE} -C {CLUSTER} tui"],
                                               capture_output=True, text=True).stdout.split()]
        if tui:
            before = cpu_ticks(tui[0])
            time.sleep(30)
            used = (cpu_ticks(tui[0]) - before) / TICKS / 30 * 100
            print(f"TUI watching {N} machines: {used:.2f}% of a core, RSS {rss_kb(tui[0]) / 1024:.1f} MB")
        subprocess.run(["tmux", "-L", sock, "kill-server"])

    # Restart: kill -9 ten peers, one at a time; time until a new peer runs there.
    times = []
    for name in names[10:110:10][:10]:
        pid = pid_of(name)
        os.kill(pid, signal.SIGKILL)
        t = time.time()
        while True:
            p = pid_of(name)
            if p and p != pid:
                break
            if time.time() - t > 120:
                raise SystemExit(f"{name} not restarted")
            time.sleep(0.05)
        times.append(time.time() - t)
    print(f"restart after kill -9: median {statistics.median(times):.1f} s = {statistics.median(times) / INTERVAL:.1f} rounds, "
          f"max {max(times):.1f} s ({len(times)} kills)")
finally:
    console("shutdown", "--timeout", "120s", check=False)
    subprocess.run(["rm", "-rf", tmp])
