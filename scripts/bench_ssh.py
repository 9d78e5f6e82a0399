#!/usr/bin/env python3
"""SSH deployment to N lab machines, smon against Ansible, side by side in one run.

    cargo build --release -p smon-lab -p smon-console -p smon-peer -p smon-agent
    sudo python3 scripts/bench_ssh.py N [--json] [--interval 1s]

Makes a lab of N machines (`smon-lab up`: network namespaces, each with its own sshd, address
and home), then:

- smon: `smon-console init` with the lab's machines, pinned host keys and key; the agent
  listening on the host's end of the lab bridge; `deploy`; timed until every machine's peer
  runs (its peer.pid names a live smon-peer: read on the machines themselves, not from the
  cluster's view). Overhead (copies per machine) from `status --json`.
- every machine wiped (`smon-lab wipe`: processes killed, homes emptied, sshd back);
- Ansible: ansible-core from PyPI in a virtualenv this script makes (target/bench-venv),
  forks=50, pipelining, no fact gathering. It pushes the same package file (the cluster's
  signed package.gz) and an install seed to every machine, runs the package's installer,
  which starts the peer detached (the same work smon's deployers do on a machine; the
  seed's interval is a day, so these peers stay quiet), and checks the package's SHA-256
  and the peer's pid. Timed: the whole ansible-playbook run, then checked on the machines.

CPU: the lab's cgroups give the CPU used on the machines; each side's controller (smon's
console and agent, Ansible's controller and its ssh clients) runs in a cgroup of its own; and
the whole host's CPU over each phase (other load included) from /proc/stat.

Prints a summary (stderr) and, with --json, one JSON object on stdout: machines,
smon_seconds, ansible_seconds, ratio (ansible/smon), smon_overhead_mean, and more. Needs root.
"""
import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
LAB, CONSOLE, PEER, AGENT = (os.path.join(REL, b) for b in ("smon-lab", "smon-console", "smon-peer", "smon-agent"))
VENV = os.path.join(ROOT, "target", "bench-venv")
TICKS = os.sysconf("SC_CLK_TCK")
DEADLINE_S = 900


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(argv, cgroup=None, **kw):
    """Run argv (optionally inside `cgroup`); its stdout; exit with its stderr on failure."""
    pre = (lambda: cgroup.join()) if cgroup else None
    out = subprocess.run(argv, capture_output=True, text=True, preexec_fn=pre, **kw)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, argv))}: exit {out.returncode}\n{out.stderr.strip()}\n{out.stdout[-2000:]}")
    return out.stdout


def cgroup2_mount():
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return left.split()[4]
    return None


class Cgroup:
    """A cgroup v2 of this benchmark: the CPU its processes use, and killing them all."""

    def __init__(self, parent, name):
        self.path = os.path.join(parent, name)
        os.makedirs(self.path, exist_ok=True)

    def join(self):
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write("0")

    def cpu_seconds(self):
        return cpu_seconds_of(self.path)

    def kill(self):
        if os.path.exists(self.path):
            with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                f.write("1")


def cpu_seconds_of(path):
    for line in open(os.path.join(path, "cpu.stat")):
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return 0.0


def remove_cgroup(path):
    for _ in range(200):
        try:
            for sub in os.listdir(path):
                full = os.path.join(path, sub)
                if os.path.isdir(full):
                    os.rmdir(full)
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def host_cpu_seconds():
    """Busy CPU seconds of the whole host since boot (every process, ours or not)."""
    fields = open("/proc/stat").readline().split()[1:]
    values = [int(v) for v in fields]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS


class Lab:
    def __init__(self, dir_, summary):
        self.dir = dir_
        self.s = summary
        self.record = json.load(open(os.path.join(dir_, "lab.json")))

    def home(self, i):
        """Home of machines-file line i (0-based), with one account per machine."""
        user = self.s["machines"][i].split("@")[0]
        return os.path.join(self.dir, f"m{i + 1}", "home", user)

    def peer_running(self, i):
        """A peer runs for line i when a process holds the flock on its peer.lock, as the peers
        judge it (peer.pid can name a pid the kernel gave to another process since)."""
        lock = os.path.join(self.home(i), ".smon", "peer.lock")
        try:
            inode = os.stat(lock).st_ino
            target = os.path.realpath(lock)
            for line in open("/proc/locks"):
                f = line.split()
                if len(f) > 5 and f[1] == "FLOCK" and f[5].endswith(f":{inode}"):
                    fds = f"/proc/{f[4]}/fd"
                    if any(os.path.realpath(os.path.join(fds, fd)) == target for fd in os.listdir(fds)):
                        return True
        except (OSError, ValueError):
            pass
        return False

    def running(self):
        return sum(self.peer_running(i) for i in range(len(self.s["machines"])))

    def target_cpu_seconds(self):
        cg = self.record.get("cgroup")
        return cpu_seconds_of(cg) if cg else None


def free_port(addr):
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def wait_all_running(lab, n, t0, what):
    last = -1
    while True:
        up = lab.running()
        if up != last:
            log(f"  {what}: {up}/{n} peers running at {time.time() - t0:.1f} s")
            last = up
        if up == n:
            return time.time()
        if time.time() - t0 > DEADLINE_S:
            raise SystemExit(f"{what}: only {up}/{n} peers run after {DEADLINE_S} s")
        time.sleep(0.05)


def bench_smon(lab, tmp, n, interval, bench_cg):
    cluster = os.path.join(tmp, "cluster")
    s = lab.s
    run([CONSOLE, "init", cluster, "--machines", s["machines_file"], "--known-hosts", s["known_hosts"],
         "--key", s["key"], "--interval", interval, "--peer-binary", PEER])
    ctl = Cgroup(bench_cg, "smon-controller")
    listen = f"{s['host_address']}:{free_port(s['host_address'])}"
    run([CONSOLE, "-C", cluster, "agent", "start", "--listen", listen], cgroup=ctl)
    before = (ctl.cpu_seconds(), lab.target_cpu_seconds(), host_cpu_seconds())
    log(f"smon: deploy through the agent on {listen}, {interval} rounds")
    t0 = time.time()
    run([CONSOLE, "-C", cluster, "deploy"], cgroup=ctl)
    first = time.time() - t0
    t_all = wait_all_running(lab, n, t0, "smon")
    after = (ctl.cpu_seconds(), lab.target_cpu_seconds(), host_cpu_seconds())
    seconds = t_all - t0
    # The records settle within a few rounds: overhead (packages copied before the peer ran).
    time.sleep(3 * parse_seconds(interval))
    status = json.loads(run([CONSOLE, "-C", cluster, "status", "--json"]))
    overheads = [r["overhead"] for r in status["records"] if r["state"] in ("running", "disabled")]
    histogram = {}
    for o in overheads:
        histogram[str(o)] = histogram.get(str(o), 0) + 1
    firsts = sorted(r["first_deployed_ms"] for r in status["records"] if r.get("first_deployed_ms"))
    rounds = (firsts[-1] - firsts[0]) / 1000 / parse_seconds(interval) if firsts else None
    run([CONSOLE, "-C", cluster, "agent", "stop"])
    ctl.kill()
    return {
        "seconds": seconds,
        "first_peer_seconds": first,
        "rounds_first_to_last": rounds,
        "overhead_mean": statistics.mean(overheads) if overheads else None,
        "overhead_max": max(overheads) if overheads else None,
        "overhead_histogram": histogram,
        "controller_cpu_s": after[0] - before[0],
        "targets_cpu_s": None if before[1] is None else after[1] - before[1],
        "host_cpu_s": after[2] - before[2],
        "cluster": cluster,
    }


def parse_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60}
    for u in ("ms", "s", "m"):
        if text.endswith(u):
            return float(text[: -len(u)]) * units[u]
    return float(text)


def ensure_ansible():
    play = os.path.join(VENV, "bin", "ansible-playbook")
    if not os.path.exists(play):
        log(f"making {VENV} with ansible-core from PyPI")
        run([sys.executable, "-m", "venv", VENV])
        run([os.path.join(VENV, "bin", "pip"), "install", "-q", "ansible-core"])
    version = run([os.path.join(VENV, "bin", "ansible"), "--version"]).splitlines()[0]
    return play, version


def seeds_for(lab, cluster, out_dir):
    """One install seed per machine, as a deployer hands one over (proto's InstallSeed), with
    a day-long interval: the peers Ansible starts run and answer, but deploy nothing."""
    config = json.load(open(os.path.join(cluster, "cluster.json")))
    config["interval_ms"] = 86_400_000
    key = list(open(os.path.join(cluster, "cluster.key"), "rb").read())
    membership = list(open(os.path.join(cluster, "membership.blob"), "rb").read())
    os.makedirs(out_dir)
    for i, entry in enumerate(lab.s["machines"]):
        user, host = entry.split("@")
        seed = {"me": {"Ssh": {"user": user, "host": host, "port": None}}, "deployer": "ansible",
                "config": config, "cluster_key": key, "membership": membership, "spread_origin": None}
        with open(os.path.join(out_dir, f"m{i + 1}.json"), "w") as f:
            json.dump(seed, f)


PLAYBOOK = """
- hosts: lab
  gather_facts: false
  tasks:
    - name: incoming directory
      ansible.builtin.file: {path: ~/.smon/incoming/ansible, state: directory, mode: "0755"}
    - name: push the package
      ansible.builtin.copy: {src: "%(package)s", dest: ~/.smon/incoming/ansible/package.gz, mode: "0644"}
    - name: push the seed
      ansible.builtin.copy: {src: "%(seeds)s/{{ inventory_hostname }}.json", dest: ~/.smon/incoming/ansible/seed.json, mode: "0600"}
    - name: check the package's hash, install it and start the peer detached
      ansible.builtin.shell: |
        set -e
        cd ~/.smon/incoming/ansible
        echo "%(sha)s  package.gz" | sha256sum -c --quiet
        gzip -dc package.gz > package && chmod 755 package
        ./package install --root ~/.smon --incoming ~/.smon/incoming/ansible
    - name: the peer runs
      ansible.builtin.shell: |
        i=$(stat -c %%i ~/.smon/peer.lock) && grep -q "FLOCK .*:$i " /proc/locks
"""


def bench_ansible(lab, tmp, cluster, bench_cg):
    play, version = ensure_ansible()
    package = os.path.join(cluster, "package.gz")
    sha = hashlib.sha256(open(package, "rb").read()).hexdigest()
    seeds = os.path.join(tmp, "seeds")
    seeds_for(lab, cluster, seeds)
    s = lab.s
    with open(os.path.join(tmp, "inventory"), "w") as f:
        f.write("[lab]\n")
        for i, entry in enumerate(s["machines"]):
            user, host = entry.split("@")
            f.write(f"m{i + 1} ansible_host={host} ansible_user={user}\n")
        f.write(f"[lab:vars]\nansible_ssh_private_key_file={s['key']}\n"
                "ansible_python_interpreter=/usr/bin/python3\n")
    with open(os.path.join(tmp, "ansible.cfg"), "w") as f:
        f.write(f"""[defaults]
forks = 50
host_key_checking = True
gathering = explicit
inventory = {tmp}/inventory
local_tmp = {tmp}/ansible-local
timeout = 30
[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={s['known_hosts']} -o StrictHostKeyChecking=yes
control_path_dir = {tmp}/cp
""")
    with open(os.path.join(tmp, "play.yml"), "w") as f:
        f.write(PLAYBOOK % {"package": package, "seeds": seeds, "sha": sha})
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(tmp, "ansible.cfg"),
               ANSIBLE_HOME=os.path.join(tmp, "ansible-home"), ANSIBLE_NOCOLOR="1")
    ctl = Cgroup(bench_cg, "ansible-controller")
    n = len(s["machines"])
    log(f"ansible: {version}, forks 50, pipelining, {n} machines")
    before = (ctl.cpu_seconds(), lab.target_cpu_seconds(), host_cpu_seconds())
    t0 = time.time()
    out = run([play, os.path.join(tmp, "play.yml")], cgroup=ctl, env=env)
    seconds = time.time() - t0
    after = (ctl.cpu_seconds(), lab.target_cpu_seconds(), host_cpu_seconds())
    ctl.kill()  # its ssh control masters persist otherwise
    recap = [l for l in out.splitlines() if "failed=" in l]
    failed = [l for l in recap if "failed=0" not in l or "unreachable=0" not in l]
    if failed or lab.running() != n:
        raise SystemExit(f"ansible: {lab.running()}/{n} peers run; {failed[:3]}")
    return {
        "seconds": seconds,
        "version": version,
        "controller_cpu_s": after[0] - before[0],
        "targets_cpu_s": None if before[1] is None else after[1] - before[1],
        "host_cpu_s": after[2] - before[2],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, help="lab machines")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--interval", default="1s", help="smon's round (default 1s)")
    args = parser.parse_args()
    for b in (LAB, CONSOLE, PEER, AGENT):
        if not os.path.exists(b):
            raise SystemExit(f"{b} is missing: cargo build --release -p smon-lab -p smon-console -p smon-peer -p smon-agent")
    mount = cgroup2_mount()
    if os.geteuid() != 0 or not mount:
        raise SystemExit("needs root and a cgroup2 mount (for the lab and the CPU accounting)")
    tmp = tempfile.mkdtemp(prefix="smon-bench-ssh-")
    os.chmod(tmp, 0o755)
    lab_dir = os.path.join(tmp, "lab")
    bench_cg = os.path.join(mount, f"smon-bench-{os.getpid()}")
    os.makedirs(bench_cg)
    load = os.getloadavg()
    try:
        t = time.time()
        summary = json.loads(run([LAB, "up", str(args.n), "--dir", lab_dir]))
        lab = Lab(lab_dir, summary)
        log(f"lab: {args.n} machines in {time.time() - t:.1f} s, {summary['subnet']}; load {load[0]:.2f}")
        smon = bench_smon(lab, tmp, args.n, args.interval, bench_cg)
        log(f"smon: {smon['seconds']:.1f} s, overhead mean {smon['overhead_mean']:.3f}")
        for m in range(1, args.n + 1):
            run([LAB, "wipe", "--dir", lab_dir, str(m)])
        assert lab.running() == 0
        ansible = bench_ansible(lab, tmp, smon.pop("cluster"), bench_cg)
        log(f"ansible: {ansible['seconds']:.1f} s")
    finally:
        for name in ("smon-controller", "ansible-controller"):
            if os.path.exists(os.path.join(bench_cg, name)):
                Cgroup(bench_cg, name).kill()
        subprocess.run([LAB, "down", "--dir", lab_dir], capture_output=True)
        remove_cgroup(bench_cg)
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "machines": args.n,
        "smon_seconds": round(smon["seconds"], 2),
        "ansible_seconds": round(ansible["seconds"], 2),
        "ratio": round(ansible["seconds"] / smon["seconds"], 2),
        "smon_overhead_mean": smon["overhead_mean"],
        "smon_overhead_max": smon["overhead_max"],
        "smon_overhead_histogram": smon["overhead_histogram"],
        "smon_interval": args.interval,
        "smon_first_peer_seconds": round(smon["first_peer_seconds"], 2),
        "smon_rounds_first_to_last": smon["rounds_first_to_last"],
        "ansible_version": ansible["version"],
        "cpu_seconds": {
            "smon_controller": round(smon["controller_cpu_s"], 2),
            "smon_machines": smon["targets_cpu_s"] and round(smon["targets_cpu_s"], 2),
            "smon_host_total": round(smon["host_cpu_s"], 2),
            "ansible_controller": round(ansible["controller_cpu_s"], 2),
            "ansible_machines": ansible["targets_cpu_s"] and round(ansible["targets_cpu_s"], 2),
            "ansible_host_total": round(ansible["host_cpu_s"], 2),
        },
        "load_average_before": round(load[0], 2),
        "cores": os.cpu_count(),
    }
    log(f"{args.n} machines: smon {result['smon_seconds']} s, Ansible {result['ansible_seconds']} s, "
        f"ratio {result['ratio']}; CPU {result['cpu_seconds']}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
