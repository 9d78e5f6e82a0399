#!/usr/bin/env python3
"""What `rounds to all` can reach in smon-sim's deployment model (issue 17), whatever the protocol.

The model of `smon-sim deploy` (peer/src/sim/params.rs, world/outputs.rs): a deployment takes a
0.5 s login, then a copy of 0.8 d during which the deployer is busy, then an install of 0.25 d'
on the target, after which the new peer can deploy too; d and d' are drawn log-normal around the
median install time (sigma 0.5), times 4 on the 5% slow machines.

Two references, over many seeds:
- greedy: an oracle that wastes nothing: every peer, the moment it is free, logs in to the next
  machine without a peer (in random order: nobody knows in advance which machines are slow).
  This is the limit of one deployment at a time per peer;
- slowest: the slowest machine's own deployment (login, copy, install), which no schedule of
  any kind beats.
And the same greedy with k concurrent deployments per peer, whose copies share the deployer's
uplink (processor sharing: j copies at once each go at 1/j of their own speed).

Usage: python3 scripts/deploy_limits.py [SEEDS]
"""
import heapq
import math
import random
import statistics
import sys

SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
LOGIN, SIGMA, SLOW_SHARE, SLOW = 0.5, 0.5, 0.05, 4.0


def machines(n, seed, median):
    rng = random.Random(seed)
    slowness = [SLOW if rng.random() < SLOW_SHARE else 1.0 for _ in range(n)]
    copy = [0.8 * median * math.exp(SIGMA * rng.gauss(0, 1)) * s for s in slowness]
    install = [0.25 * median * math.exp(SIGMA * rng.gauss(0, 1)) * s for s in slowness]
    order = list(range(1, n))
    rng.shuffle(order)
    return copy, install, order


def greedy(n, seed, median):
    """Last start of the one-at-a-time greedy oracle, and the slowest single deployment."""
    copy, install, order = machines(n, seed, median)
    free = [(0.0, 0)]
    last = 0.0
    for m in order:
        t, peer = heapq.heappop(free)
        copied = t + LOGIN + copy[m]
        started = copied + install[m]
        last = max(last, started)
        heapq.heappush(free, (copied, peer))
        heapq.heappush(free, (started, m))
    slowest = max(LOGIN + copy[m] + install[m] for m in range(1, n))
    return last, slowest


def concurrent(n, seed, median, k):
    """Last start when each peer runs up to k deployments whose copies share its uplink."""
    copy, install, order = machines(n, seed, median)
    t, nxt, last = 0.0, 0, 0.0
    active = {0: []}  # peer -> [target, login left (s), copy left (fraction)]
    starting = []  # (time, machine)
    while True:
        for jobs in active.values():
            while len(jobs) < k and nxt < len(order):
                jobs.append([order[nxt], LOGIN, 1.0])
                nxt += 1
        if not starting and not any(active.values()):
            return last
        rate, dt = {}, math.inf
        for jobs in active.values():
            copying = [j for j in jobs if j[1] <= 0]
            for j in jobs:
                if j[1] > 0:
                    dt = min(dt, j[1])
                else:
                    rate[id(j)] = 1 / (copy[j[0]] * len(copying))
                    dt = min(dt, j[2] / rate[id(j)])
        if starting:
            dt = min(dt, starting[0][0] - t)
        t += dt
        for jobs in active.values():
            for j in list(jobs):
                if j[1] > 0:
                    j[1] -= dt
                else:
                    j[2] -= rate[id(j)] * dt
                    if j[2] <= 1e-9:
                        jobs.remove(j)
                        heapq.heappush(starting, (t + install[j[0]], j[0]))
        while starting and starting[0][0] <= t + 1e-9:
            _, m = heapq.heappop(starting)
            active[m] = []
            last = max(last, t)


def rounds(times, interval):
    r = sorted(math.ceil(x / interval) for x in times)
    return f"mean {statistics.mean(r):.1f}, median {statistics.median(r):.0f}, p90 {r[int(0.9 * len(r))]}"


def main():
    cases = [(117, 5.0, 5.0), (1000, 5.0, 5.0), (10000, 5.0, 5.0), (117, 0.3, 1.0)]
    print(f"rounds to all over {SEEDS} seeds (as smon-sim counts them: ceil(last start / interval))\n")
    for n, median, interval in cases:
        seeds = SEEDS if n <= 1000 else max(1, SEEDS // 10)
        runs = [greedy(n, s, median) for s in range(seeds)]
        label = f"{n} machines, {median:g} s installs, {interval:g} s rounds"
        print(f"{label}: ⌈log2 N⌉ = {math.ceil(math.log2(n))}")
        print(f"  greedy, one deployment at a time: {rounds([r[0] for r in runs], interval)}")
        print(f"  slowest single deployment:       {rounds([r[1] for r in runs], interval)}")
        if n <= 1000:
            few = max(1, seeds // 5 if n == 1000 else seeds // 2)
            for k in (2, 3, 4):
                times = [concurrent(n, s, median, k) for s in range(few)]
                print(f"  {k} at once, shared uplink ({few} seeds): {rounds(times, interval)}")
        print()


if __name__ == "__main__":
    main()
