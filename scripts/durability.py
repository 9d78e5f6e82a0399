#!/usr/bin/env python3
"""Durability under kill -9: nothing a peer acknowledged is lost, and its database opens.

A real local cluster (smon-console init/deploy, like the other scripts) runs an application.
Each round picks a peer (the victim) and commits control actions through it, one after the
other, with `smon-console --via VICTIM`: livetag flips (disable/enable), membership changes
(a machine added and removed), the application's cluster-wide desired state (app set) and its
desired state on the victim's machine (app set --machine). At a random moment the victim gets
SIGKILL. Then, before anything restarts it:

- its SQLite database opens and `PRAGMA integrity_check` says ok;
- what it stored is at least what it acknowledged: the livetag and membership versions are not
  older than the last acknowledged ones (and the livetag has the acknowledged value at that
  version); the application's cluster-wide desired state, and the per-machine one in its
  run.json, are the last acknowledged values (or the value of the action in flight when it died).

The victim is then restarted the way peers restart each other (`smon-peer start`), must answer,
and must report that state. Before the next round the cluster converges again.

Usage: cargo build --release -p smon-peer -p smon-console
       python3 scripts/durability.py [ROUNDS] [--console PATH] [--dir DIR] [--seed N] [--json]
ROUNDS defaults to 100. Exit status 0 when every round held. Every process the script started
(peers, applications) is ended by pid before it exits.
"""
import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

APP = "durable"
VICTIMS = ["m001", "m002", "m003"]
BASE = ["m001", "m002", "m003", "m004"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rounds", nargs="?", type=int, default=100)
    p.add_argument("--console", default=os.path.abspath("target/release/smon-console"))
    p.add_argument("--dir", help="work directory (default: a new temporary one, removed after)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--interval", default="1s", help="the cluster's round (default 1s)")
    p.add_argument("--window", type=float, default=2.0,
                   help="the kill comes 0.1..WINDOW s after the round's first action (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return p.parse_args()


class Cluster:
    def __init__(self, console, work, interval):
        self.console_bin = console
        self.work = work
        self.dir = os.path.join(work, "cluster")
        self.interval = interval

    def run(self, *args, via=None, timeout=120):
        cmd = [self.console_bin, "-C", self.dir]
        if via:
            cmd += ["--via", f"local:{via}"]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout)

    def ok(self, *args, via=None, timeout=120):
        out = self.run(*args, via=via, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"smon-console {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def root(self, name):
        return os.path.join(self.dir, "machines.d", name)

    def pid(self, name):
        try:
            pid = int(open(os.path.join(self.root(name), "peer.pid")).read())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def status(self, via):
        return json.loads(self.ok("status", "--json", via=via, timeout=30))

    def app_rows(self, via):
        return json.loads(self.ok("app", "status", APP, "--json", via=via, timeout=30))["rows"]


def alive(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes_under(path):
    """Live pids whose command line names `path` or whose working directory is under it."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        if (path in cmdline or cwd.startswith(path)) and alive(int(entry)):
            pids.append(int(entry))
    return pids


def wait_for(what, cond, timeout=60.0):
    deadline = time.time() + timeout
    while True:
        try:
            value = cond()
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.time() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def setup(c):
    os.makedirs(c.work, exist_ok=True)
    machines = os.path.join(c.work, "machines")
    with open(machines, "w") as f:
        f.writelines(f"local:{n}\n" for n in BASE)
    # The membership files the rounds switch between: m005 added, m005 removed.
    for name, names in (("with-m005", BASE + ["m005"]), ("without-m005", BASE)):
        with open(os.path.join(c.work, name), "w") as f:
            f.writelines(f"local:{n}\n" for n in names)
    peer = os.path.join(os.path.dirname(c.console_bin), "smon-peer")
    subprocess.run([c.console_bin, "init", c.dir, "--machines", machines, "--interval", c.interval,
                    "--peer-binary", peer], check=True, capture_output=True, timeout=120)
    c.ok("deploy")
    c.ok("wait", "--deployed", "all", "--timeout", "180s", timeout=200)
    app = os.path.join(c.work, "app")
    os.makedirs(app, exist_ok=True)
    with open(os.path.join(app, "app.toml"), "w") as f:
        f.write(f'name = "{APP}"\nversion = "1.0.0"\nstart = "exec sleep 100000"\n'
                'stop_timeout = "2s"\n')
    c.ok("app", "install", app)
    for v in VICTIMS:
        wait_for(f"{APP} on {v}", lambda v=v: any(r["machine"] == f"local:{v}"
                                                   for r in c.app_rows(v)), 120)


def converged(c):
    """Every victim answers and reports the same livetag, membership version and app state."""
    seen = set()
    for v in VICTIMS:
        s = c.status(v)
        rows = [r for r in c.app_rows(v) if r["machine"] == f"local:{v}"]
        seen.add((s["livetag"]["version"], s["livetag"]["enabled"], s["membership_version"]))
        if not rows:
            return False
    return len(seen) == 1


ACTIONS = ["livetag", "membership", "app", "app-here"]


def act(c, victim, rng):
    """One random control action through `victim`; (kind, value, args)."""
    kind = rng.choice(ACTIONS)
    if kind == "livetag":
        value = rng.choice([True, False])
        return kind, value, ["enable" if value else "disable"]
    if kind == "membership":
        value = rng.choice(["with-m005", "without-m005"])
        return kind, value, ["membership", "set", os.path.join(c.work, value)]
    value = rng.choice(["online", "offline", "ignore"])
    if kind == "app":
        return kind, value, ["app", "set", APP, value]
    return kind, value, ["app", "set", APP, value, "--machine", f"local:{victim}"]


def number_after(text, word):
    """The integer after `word` in `text` (`version 12` → 12)."""
    tail = text.split(word, 1)[1].split()[0]
    return int("".join(ch for ch in tail if ch.isdigit()))


def drive(c, victim, rng, stop, log):
    """Commit actions through `victim` until `stop` is set; log one dict per action."""
    while not stop.is_set():
        kind, value, args = act(c, victim, rng)
        entry = {"kind": kind, "value": value, "start": time.time()}
        try:
            out = c.run(*args, via=victim, timeout=60)
            entry["ok"] = out.returncode == 0
            entry["answer"] = (out.stdout or out.stderr).strip()
        except subprocess.TimeoutExpired:
            entry["ok"], entry["answer"] = False, "timed out"
        entry["end"] = time.time()
        if entry["ok"] and kind == "livetag":
            entry["version"] = number_after(entry["answer"], "version")
        if entry["ok"] and kind == "membership":
            entry["version"] = number_after(entry["answer"], "membership version")
        log.append(entry)


def stored(c, victim):
    """What the victim's database and run.json hold; integrity first."""
    db = sqlite3.connect(os.path.join(c.root(victim), "state.db"), timeout=10)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        kv = dict(db.execute("SELECT k, v FROM kv").fetchall())
    finally:
        db.close()
    state = json.loads(kv["state"])
    blob = kv["membership"]
    apps = {a["name"]: a for a in state.get("apps", [])}
    runfile = os.path.join(c.root(victim), "apps", APP, "run.json")
    try:
        run = json.load(open(runfile))
    except (OSError, ValueError):
        run = {}
    return {
        "integrity": integrity,
        "livetag": (state["livetag"]["version"], state["livetag"]["enabled"]),
        # The blob's header: magic, format, then the version (u64 LE).
        "membership_version": int.from_bytes(bytes(blob)[5:13], "little"),
        "app_desired": apps.get(APP, {}).get("desired"),
        "override": (run.get("override") or {}).get("desired"),
    }


def expectations(log, kill_at):
    """The last acknowledged action of each kind, and the action in flight at the kill.

    Every action went to the victim alone (--via), so every OK came from it, even one that
    reached the console just after the kill. An action that failed after starting before the
    kill was in flight: the victim may or may not have committed it.
    """
    last = {}
    for e in log:
        if e["ok"]:
            last[e["kind"]] = e
    flying = next((e for e in log if not e["ok"] and e["start"] <= kill_at), None)
    # A cluster-wide setting newer than the per-machine one ends it (or may, in flight).
    here_maybe = None
    if "app-here" in last and (
        ("app" in last and last["app"]["end"] > last["app-here"]["end"])
        or (flying is not None and flying["kind"] == "app")
    ):
        # A cluster-wide setting in flight may not have been committed: the machine's own
        # setting may then still be in force.
        if not ("app" in last and last["app"]["end"] > last["app-here"]["end"]):
            here_maybe = last["app-here"]["value"]
        del last["app-here"]
    # What may be in force on the machine besides the cluster-wide setting: a machine setting
    # in flight (it may have been committed), or one a cluster-wide setting in flight may
    # not have ended.
    if flying is not None and flying["kind"] == "app-here":
        here_maybe = flying["value"]
    if "app" in last:
        last["app"]["in_force_maybe"] = here_maybe
    return last, flying


def check(found, last, flying, in_force=False):
    """The ways `found` (stored, or with `in_force` reported as in force) loses what `last`
    acknowledged."""
    problems = []
    maybe = lambda kind: flying is not None and flying["kind"] == kind
    if "livetag" in last:
        want = (last["livetag"]["version"], last["livetag"]["value"])
        got = found["livetag"]
        if got[0] < want[0] or (got[0] == want[0] and got[1] != want[1]):
            problems.append(f"livetag {got}, acknowledged {want}")
    if "membership" in last:
        want = last["membership"]["version"]
        if found["membership_version"] < want:
            problems.append(f"membership version {found['membership_version']}, acknowledged {want}")
    for kind, key in (("app", "app_desired"), ("app-here", "override")):
        if kind in last and key in found:
            allowed = {last[kind]["value"]} | ({flying["value"]} if maybe(kind) else set())
            if in_force and last[kind].get("in_force_maybe") is not None:
                allowed.add(last[kind]["in_force_maybe"])
            if found[key] not in allowed:
                problems.append(f"{kind} {found[key]}, acknowledged {last[kind]['value']}")
    return problems


def reported(c, victim, last):
    """The same facts, as the restarted victim answers them."""
    s = c.status(victim)
    rows = [r for r in c.app_rows(victim) if r["machine"] == f"local:{victim}"]
    found = {"livetag": (s["livetag"]["version"], s["livetag"]["enabled"]),
             "membership_version": s["membership_version"]}
    # The desired state in force on the victim: its own setting if still in force.
    if rows and ("app-here" in last or "app" in last):
        key = "override" if "app-here" in last else "app_desired"
        found[key] = rows[0]["desired"]
    return found


def one_round(c, n, rng, window):
    victim = rng.choice(VICTIMS)
    # A disabled cluster does not gossip: enable it (through any peer) to converge.
    if not c.status(None)["livetag"]["enabled"]:
        c.ok("enable")
    wait_for("the cluster to converge", lambda: converged(c), 180)
    pid = c.pid(victim)
    stop, log = threading.Event(), []
    driver = threading.Thread(target=drive, args=(c, victim, rng, stop, log))
    driver.start()
    time.sleep(rng.uniform(0.1, window))
    kill_at = time.time()
    os.kill(pid, signal.SIGKILL)
    stop.set()
    driver.join()
    wait_for(f"pid {pid} to die", lambda: not alive(pid), 10)
    last, flying = expectations(log, kill_at)
    found = stored(c, victim)
    problems = [] if found["integrity"] == "ok" else [f"integrity_check: {found['integrity']}"]
    problems += [f"stored {p}" for p in check(found, last, flying)]
    # Restart it as a peer would (a disabled cluster would not), then ask it.
    root = c.root(victim)
    subprocess.run([os.path.join(root, "current", "smon-peer"), "start", "--root", root],
                   capture_output=True, timeout=60)
    wait_for(f"{victim} to answer", lambda: c.status(victim), 60)
    # It reports it once its supervisor has adopted the application again.
    try:
        wait_for(f"{victim} to report what it acknowledged",
                 lambda: not check(reported(c, victim, last), last, flying, True), 30)
    except RuntimeError:
        problems += [f"reported {p}"
                     for p in check(reported(c, victim, last), last, flying, True)]
    return {"round": n, "victim": victim, "actions": len(log),
            "acknowledged": sum(e["ok"] for e in log),
            "in_flight": flying["kind"] if flying else None,
            "kill_after_s": round(kill_at - log[0]["start"], 3) if log else None,
            "problems": problems}


def main():
    args = parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = args.dir or tempfile.mkdtemp(prefix="smon-durability-")
    c = Cluster(os.path.abspath(args.console), os.path.abspath(work), args.interval)
    results, error = [], None
    started = time.time()
    try:
        setup(c)
        for n in range(1, args.rounds + 1):
            r = one_round(c, n, rng, args.window)
            results.append(r)
            if not args.json:
                verdict = "ok" if not r["problems"] else "LOST: " + "; ".join(r["problems"])
                print(f"round {n:3}: kill -9 {r['victim']} {r['kill_after_s']} s into "
                      f"{r['actions']} actions ({r['acknowledged']} acknowledged, in flight: "
                      f"{r['in_flight']}): {verdict}", flush=True)
    except Exception as e:  # the summary says what stopped the run
        error = f"{type(e).__name__}: {e}"
    finally:
        c.run("shutdown", "--timeout", "60s", timeout=120)
        for pid in processes_under(c.work):
            os.kill(pid, signal.SIGKILL)
        left = wait_for_none(c.work)
        if not args.dir:
            subprocess.run(["rm", "-rf", work])
    held = sum(1 for r in results if not r["problems"])
    summary = {"rounds": args.rounds, "completed": len(results), "held": held, "seed": seed,
               "actions": sum(r["actions"] for r in results),
               "acknowledged": sum(r["acknowledged"] for r in results),
               "killed_in_flight": sum(1 for r in results if r["in_flight"]),
               "seconds": round(time.time() - started), "error": error,
               "left_behind": left,
               "problems": [p for r in results for p in r["problems"]]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{held} of {args.rounds} rounds: nothing acknowledged lost, database opens "
              f"({summary['acknowledged']} acknowledged actions, {summary['killed_in_flight']} "
              f"kills with an action in flight, seed {seed}, {summary['seconds']} s)"
              + (f"; stopped: {error}" if error else "")
              + (f"; processes left: {left}" if left else ""))
    sys.exit(0 if held == args.rounds and not error and not left else 1)


def wait_for_none(path):
    deadline = time.time() + 10
    while processes_under(path) and time.time() < deadline:
        time.sleep(0.1)
    return processes_under(path)


if __name__ == "__main__":
    main()
