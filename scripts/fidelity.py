#!/usr/bin/env python3
"""Reproduce FIDELITY.md: run the release smon-sim over several seeds and print the tables.

Usage: cargo build --release -p smon-peer --bin smon-sim && python3 scripts/fidelity.py
"""
import json
import math
import statistics
import subprocess
import sys
import tempfile

SIM = "target/release/smon-sim"
SEEDS = range(1, 21)


def run(*args):
    out = subprocess.run([SIM, *args, "--json", "--no-wall-clock"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def curve(*args):
    with tempfile.NamedTemporaryFile("r", suffix=".csv") as f:
        run(*args, "--curve", f.name)
        rows = f.read().strip().splitlines()[1:]
        return [float(r.split(",")[1]) for r in rows]


def mean_field(n, rounds):
    miss = 1 - 1 / (n - 1)
    y, copies, deployed = [1 / n], 0.0, 0.0
    for _ in range(rounds):
        m = y[-1] * n
        new = (n - m) * (1 - miss ** m)
        copies += (n - m) * m / (n - 1)
        deployed += new
        y.append((m + new) / n)
    return y, copies / deployed


def closed_form(n, r):
    return 1 / (1 + n * math.exp(-r))


def many(scenario, n, strategy, deploy_time, extra=()):
    return [run(scenario, "--machines", str(n), "--seed", str(s), "--strategy", strategy,
                "--deploy-time", deploy_time, *extra) for s in SEEDS]


def summary(reports, key):
    vals = [r[key] for r in reports if r[key] is not None]
    return statistics.mean(vals), max(vals)


def main():
    n = 117
    print("## Paper mode: deployed fraction per round, n = 117 (mean of 20 seeds)\n")
    curves = [curve("deploy", "--machines", str(n), "--seed", str(s), "--strategy", "smon", "--deploy-time", "0")
              for s in SEEDS]
    rounds = 14
    avg = [statistics.mean(c[r] if r < len(c) else 1.0 for c in curves) for r in range(rounds + 1)]
    model, model_overhead = mean_field(n, 80)
    print("| round | smon-sim (smon) | mean-field model | paper Y_r = 1/(1+n e^-r) |")
    print("|---|---|---|---|")
    for r in range(rounds + 1):
        print(f"| {r} | {avg[r]:.3f} | {model[r]:.3f} | {closed_form(n, r):.3f} |")
    print()
    print("## Overhead (package copies per deployed machine)\n")
    print("| n | mode | strategy | mean | max | model / paper |")
    print("|---|---|---|---|---|---|")
    for size in (117, 1000):
        _, mo = mean_field(size, 200)
        for strategy in ("smon", "informed"):
            reps = many("deploy", size, strategy, "0")
            mean, _ = summary(reps, "overhead_mean")
            mx = max(r["overhead_max"] for r in reps)
            ref = f"binomial model {mo:.3f} (limit 1.582)" if strategy == "smon" else "goal ≤ 1.05, max ≤ 3"
            print(f"| {size} | instantaneous | {strategy} | {mean:.3f} | {mx} | {ref} |")
    for strategy in ("smon", "informed"):
        reps = many("deploy", 117, strategy, "5s")
        mean, _ = summary(reps, "overhead_mean")
        mx = max(r["overhead_max"] for r in reps)
        hist = {}
        for r in reps:
            for k, v in r["overhead_histogram"].items():
                hist[int(k)] = hist.get(int(k), 0) + v
        total = sum(hist.values())
        dist = ", ".join(f"{k}: {100 * v / total:.1f}%" for k, v in sorted(hist.items()))
        print(f"| 117 | async, 5 s deploys | {strategy} | {mean:.3f} | {mx} | paper Table II: mean 1.88, max 23; ours {dist} |")
    print()
    print("## Rounds (5 s rounds); paper Table III and Fig. 6\n")
    print("| n | mode | strategy | p50 | p90 | all (mean / max over seeds) | paper |")
    print("|---|---|---|---|---|---|---|")
    paper = {24: "48 s / 58 s / 61 s = 9.6 / 11.6 / 12.2 rounds", 117: "63 s / 91 s / 111 s = 12.6 / 18.2 / 22.2 rounds"}
    ratios = {}
    for mode, dt in (("instantaneous", "0"), ("async, 5 s deploys", "5s")):
        for strategy in ("smon", "informed"):
            for size in (24, 117, 1000):
                reps = many("deploy", size, strategy, dt)
                p50 = statistics.mean(r["p50_rounds"] for r in reps)
                p90 = statistics.mean(r["p90_rounds"] for r in reps)
                alls = [r["rounds_to_all"] for r in reps]
                ratios[(mode, strategy, size)] = p90
                ref = paper.get(size, "") if dt != "0" else ""
                print(f"| {size} | {mode} | {strategy} | {p50:.1f} | {p90:.1f} | {statistics.mean(alls):.1f} / {max(alls)} | {ref} |")
    print()
    for mode in ("instantaneous", "async, 5 s deploys"):
        for strategy in ("smon", "informed"):
            r = ratios[(mode, strategy, 117)] / ratios[(mode, strategy, 24)]
            print(f"- p90 ratio 117/24, {mode}, {strategy}: {r:.2f} (paper 1.57; log 117 / log 24 = 1.50)")
    print()
    print("## Large scale, instantaneous deployment, informed\n")
    for size in (10000,):
        reps = [run("deploy", "--machines", str(size), "--seed", str(s), "--deploy-time", "0") for s in range(1, 6)]
        print(f"- {size} machines: rounds to all {[r['rounds_to_all'] for r in reps]} (goal ≤ 16), "
              f"overhead max {max(r['overhead_max'] for r in reps)}")
    print()
    print("## Disable, upgrade, partition, churn (117 machines, 20 seeds; rounds: mean / max)\n")
    print("| scenario | strategy | rounds | paper |")
    print("|---|---|---|---|")
    for scenario, ref in (("disable", "34 s = 6.8 rounds (Fig. 6); goal ≤ 5"), ("upgrade", ""), ("partition", "rounds after healing"), ("churn", "30% of peers crashed")):
        for strategy in ("smon", "informed"):
            reps = many(scenario, 117, strategy, "5s")
            vals = [r["rounds_to_all"] for r in reps]
            ok = all(r["converged"] for r in reps)
            print(f"| {scenario} | {strategy} | {statistics.mean(vals):.1f} / {max(vals)}{'' if ok else ' (NOT all converged)'} | {ref} |")
    print()
    print("## Gossip traffic, bytes per peer per round (deploy, async)\n")
    for size in (117, 1000):
        reps = many("deploy", size, "informed", "5s")
        mean, mx = summary(reps, "bytes_per_peer_per_round")
        print(f"- {size} machines: mean {mean:.0f}, max {mx:.0f} (goal ≤ 2048 at 1,000)")


if __name__ == "__main__":
    sys.exit(main())
