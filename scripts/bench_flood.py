#!/usr/bin/env python3
"""Deploy and disable a local cluster quiet and under a connection flood against its first
peer, side by side (issue 14 item 3: "deploy/disable rounds within ±20% of a quiet run").

Each run makes a fresh cluster of N local machines (rounds of INTERVAL_S), starts the flood
(`smon-lab flood`, 1,000 connections from 127.0.0.66, over loopback) against m001's address
before `deploy` (m001 is the machine the console deploys first, so the flood is there from the
moment its peer listens, and every other machine is deployed from it or its successors), then
times `deploy` to `wait --deployed all` and `disable` to `wait --disabled`, stops the flood and
shuts the cluster down. Modes run interleaved (quiet, hold, churn, wrong-key, quiet, ...), RUNS
rounds of them, so that the machine's load falls on all alike.

Usage: cargo build --release -p smon-peer -p smon-console -p smon-lab &&
       flock /tmp/smon-heavy.lock python3 scripts/bench_flood.py [N] [INTERVAL_S] [RUNS] [MODES]
MODES: comma-separated of quiet,hold,churn,wrong-key (default all four).
"""
import hashlib
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 24
INTERVAL = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 2
MODES = (sys.argv[4] if len(sys.argv) > 4 else "quiet,hold,churn,wrong-key").split(",")
CONSOLE = os.path.abspath("target/release/smon-console")
LAB = os.path.abspath("target/release/smon-lab")
CONNECTIONS = 1000
TICKS = os.sysconf("SC_CLK_TCK")


def console(cluster, *args, check=True):
    out = subprocess.run([CONSOLE, "-C", cluster, *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise SystemExit(f"smon-console {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def peer_address(cluster, name):
    """Where a local machine's peer listens: ClusterConfig::local_address and the cluster's
    port (a local machine is alone on its address: port offset 0)."""
    config = json.load(open(f"{cluster}/cluster.json"))
    h = hashlib.sha256(struct.pack("<Q", config["local_salt"]) + name.encode()).digest()
    return f"127.{1 + h[0] % 254}.{h[1]}.{1 + h[2] % 254}:{config['port']}"


def cpu_s(pid):
    """CPU seconds (user + system) a process used so far; None once it is gone."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, ValueError):
        return None


def peer_pid(cluster, name):
    try:
        return int(open(f"{cluster}/machines.d/{name}/peer.pid").read())
    except (OSError, ValueError):
        return None


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def one_run(mode):
    tmp = tempfile.mkdtemp(prefix="smon-bench-flood-")
    cluster = f"{tmp}/cluster"
    names = [f"m{i:03}" for i in range(1, N + 1)]
    with open(f"{tmp}/machines", "w") as f:
        f.writelines(f"local:{n}\n" for n in names)
    subprocess.run([CONSOLE, "init", cluster, "--machines", f"{tmp}/machines",
                    "--interval", f"{int(INTERVAL * 1000)}ms"], check=True, capture_output=True)
    flood = None
    result = {"mode": mode, "load_before": loadavg()}
    try:
        if mode != "quiet":
            flood = subprocess.Popen([LAB, "flood", "--to", peer_address(cluster, "m001"), "--mode", mode,
                                      "--connections", str(CONNECTIONS), "--for", "900s"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.5)  # its 1,000 connections are being opened while deploy starts
        t = time.monotonic()
        console(cluster, "deploy")
        console(cluster, "wait", "--deployed", "all", "--timeout", "600s")
        result["deploy_s"] = time.monotonic() - t
        t = time.monotonic()
        console(cluster, "disable")
        console(cluster, "wait", "--disabled", "--timeout", "600s")
        result["disable_s"] = time.monotonic() - t
        result["m001_cpu_s"] = cpu_s(peer_pid(cluster, "m001"))
    finally:
        if flood:
            result["flooder_cpu_s"] = cpu_s(flood.pid)
            flood.send_signal(signal.SIGTERM)
            out, err = flood.communicate(timeout=60)
            result["flood"] = json.loads(out) if out.strip() else {"error": err.strip()}
        console(cluster, "shutdown", "--timeout", "120s", check=False)
        subprocess.run(["rm", "-rf", tmp])
    result["load_after"] = loadavg()
    return result


def main():
    print(f"{N} local machines, {INTERVAL} s rounds, {RUNS} runs of {', '.join(MODES)}; "
          f"{os.cpu_count()} cores; load average before: {open('/proc/loadavg').read().strip()}")
    results = []
    for r in range(RUNS):
        for mode in MODES:
            res = one_run(mode)
            results.append(res)
            fl = res.get("flood", {})
            extra = (f"; flooder: {fl.get('attempts', 0)} attempts, {fl.get('connected', 0)} connected, "
                     f"{fl.get('closed_by_server', 0)} closed by the peer, "
                     f"{fl.get('handshakes_refused', 0)} wrong-key handshakes refused, "
                     f"{fl.get('handshakes_accepted', 0)} accepted") if fl else ""
            print(f"run {r + 1} {mode:9}: deploy {res['deploy_s']:5.1f} s = {res['deploy_s'] / INTERVAL:4.1f} rounds, "
                  f"disable {res['disable_s']:5.1f} s = {res['disable_s'] / INTERVAL:4.1f} rounds "
                  f"(load {res['load_before']} -> {res['load_after']}); CPU: m001 {res['m001_cpu_s'] or 0:.2f} s"
                  + (f", flooder {res.get('flooder_cpu_s') or 0:.2f} s" if fl else "") + extra, flush=True)
    quiet = [x for x in results if x["mode"] == "quiet"]
    if not quiet:
        return
    q_dep = statistics.mean(x["deploy_s"] for x in quiet)
    q_dis = statistics.mean(x["disable_s"] for x in quiet)
    print(f"\nmean over {RUNS} runs (rounds of {INTERVAL} s), ratio to quiet:")
    for mode in MODES:
        xs = [x for x in results if x["mode"] == mode]
        dep = statistics.mean(x["deploy_s"] for x in xs)
        dis = statistics.mean(x["disable_s"] for x in xs)
        print(f"  {mode:9}: deploy {dep / INTERVAL:4.1f} rounds ({dep / q_dep:4.2f}x), "
              f"disable {dis / INTERVAL:4.1f} rounds ({dis / q_dis:4.2f}x)")


if __name__ == "__main__":
    main()
