#!/usr/bin/env python3
"""CPU one deployment costs on this machine, step by step, on real local machines (issue 17).

Deploys the first peer with the console, then installs the package on K further local
machines by hand, doing what a deployer does to a local machine (machine_ops.rs): the probe,
the claim, the copy of the package (fsynced), `package install` (size check, SHA-256 and
signature, install lock, SQLite, version store, start of the peer), and measures the CPU
(user + system, from getrusage of each child) of every step, and the new peer's own CPU until
it listens. Also the gzip -d that an SSH machine adds (its package travels compressed; a local
machine gets it as is). Prints the medians and the bound for a local cluster of N machines on
this host's cores: N x (CPU per install) / cores.

Usage: cargo build --release -p smon-peer -p smon-console && python3 scripts/bench_install.py [K] [N]
"""
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile

K = int(sys.argv[1]) if len(sys.argv) > 1 else 20
N = int(sys.argv[2]) if len(sys.argv) > 2 else 117
CONSOLE = os.path.abspath("target/release/smon-console")


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def step(argv):
    """Run argv; return the CPU seconds it and its reaped children used."""
    before = children_cpu()
    subprocess.run(argv, check=True, capture_output=True)
    return children_cpu() - before


def proc_cpu(pid):
    """CPU seconds of every thread of `pid` so far (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


tmp = tempfile.mkdtemp(prefix="smon-install-")
cluster = f"{tmp}/cluster"
names = [f"m{i:03}" for i in range(1, K + 2)]
with open(f"{tmp}/machines", "w") as f:
    f.writelines(f"local:{n}\n" for n in names)
subprocess.run([CONSOLE, "init", cluster, "--machines", f"{tmp}/machines", "--interval", "3600s"],
               check=True, capture_output=True)
started = []
try:
    # The first peer (the console deploys it) gives a real seed to copy from.
    subprocess.run([CONSOLE, "-C", cluster, "deploy"], check=True, capture_output=True)
    first = f"{cluster}/machines.d/{names[0]}"
    started.append(int(open(f"{first}/peer.pid").read()))
    db = sqlite3.connect(f"{first}/state.db")
    kv = dict(db.execute("SELECT k, v FROM kv"))
    db.close()
    package = f"{cluster}/package"
    gz = f"{tmp}/package.gz"
    subprocess.run(["sh", "-c", f'gzip -6 -c "{package}" > "{gz}"'], check=True)
    rows = {k: [] for k in ("probe", "claim", "copy", "install", "peer start", "total", "gunzip (SSH)")}
    for name in names[1:]:
        root = f"{cluster}/machines.d/{name}"
        incoming = f"{root}/incoming/bench-{name}"
        seed = {
            "me": {"Local": {"name": name}},
            "deployer": "bench",
            "config": json.loads(kv["config"]),
            "cluster_key": list(kv["cluster_key"]),
            "membership": list(kv["membership"]),
            "spread_origin": json.loads(kv["spread_origin"]),
        }
        probe = (f'R={root}; mkdir -p "$R/incoming"; printf x >> "$R/logins"; '
                 f'[ -x "$R/current/smon-peer" ]; [ -f "$R/peer.pid" ]; now=$(date +%s); '
                 f'for f in "$R"/incoming/claim-* "$R"/incoming/*/*; do '
                 f'm=$(stat -c %Y "$f" 2>/dev/null) || continue; [ $((now - m)) -lt 30 ] && break; done; true')
        t = {"probe": step(["sh", "-c", probe]),
             "claim": step(["sh", "-c", f'mkdir -p "{incoming}" && : > "{root}/incoming/claim-bench"'])}
        # The deployer's copy: tokio::fs::copy then fsync (remote.rs); cp + sync here.
        t["copy"] = step(["sh", "-c", f'cp "{package}" "{incoming}/package" && sync "{incoming}/package"'])
        with open(f"{incoming}/seed.json", "w") as f:
            json.dump(seed, f)
        t["install"] = step([f"{incoming}/package", "install", "--root", root, "--incoming", incoming])
        pid = int(open(f"{root}/peer.pid").read())
        started.append(pid)
        # The new peer up to listening (its pid file).
        t["peer start"] = proc_cpu(pid)
        t["total"] = sum(t.values())
        # What an SSH machine adds: the package arrives gzip-compressed.
        t["gunzip (SSH)"] = step(["sh", "-c", f'gzip -dc "{gz}" > "{tmp}/unzipped"'])
        for k, v in t.items():
            rows[k].append(v)
    print(f"{K} installs on local machines, {os.cpu_count()} cores, load average before: "
          f"{open('/proc/loadavg').read().split()[0]}")
    print(f"package: {os.path.getsize(package) / 1e6:.2f} MB (as copied to a local machine), "
          f"{os.path.getsize(gz) / 1e6:.2f} MB gzip (as copied to an SSH machine)")
    for k, v in rows.items():
        print(f"  {k:10} CPU median {1000 * statistics.median(v):6.1f} ms   max {1000 * max(v):6.1f} ms")
    per = statistics.median(rows["total"])
    cores = os.cpu_count()
    print(f"bound for {N} local machines on {cores} cores: {N} x {1000 * per:.0f} ms / {cores} = "
          f"{N * per / cores:.1f} s of CPU (first peer start to last, at best)")
    ssh = per + statistics.median(rows["gunzip (SSH)"])
    print(f"(with the gzip -d of the SSH path: {1000 * ssh:.0f} ms per install, {N * ssh / cores:.1f} s)")
finally:
    subprocess.run([CONSOLE, "-C", cluster, "shutdown", "--timeout", "60s"], capture_output=True)
    for pid in started:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    shutil.rmtree(tmp, ignore_errors=True)
