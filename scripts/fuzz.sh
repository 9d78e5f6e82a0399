#!/usr/bin/env bash
# Run every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for INPUTS inputs each, one after the
# other, and print per target the inputs run and the findings (crashes, including failed
# invariants; timeouts; out-of-memory; leaks).
#
#   scripts/fuzz.sh [INPUTS] [TARGET...]        INPUTS defaults to 1000000; all targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each run starts
# from the committed corpus (fuzz/corpus/TARGET, where new coverage is added), the past
# findings (fuzz/regressions/TARGET) and the seeds made from real encodings; findings are
# written to fuzz/artifacts/TARGET. Limits per input: 10 s, 2 GiB RSS, 512 MiB in one
# allocation, -max_len from the target's table (fuzz/targets/src/lib.rs). A target runs in
# sessions of at most SMON_FUZZ_CHUNK inputs (default 250000), each resuming from the corpus;
# set SMON_FUZZ_LOCK to a lock file to hold it (flock) during each session. Before committing
# a corpus, minimise it: cargo +nightly fuzz cmin TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs=${1:-1000000}
shift || true
lock=${SMON_FUZZ_LOCK:-}
chunk=${SMON_FUZZ_CHUNK:-250000}

cargo build --release --quiet -p smon-fuzz-targets --example fuzz_seeds
list=target/release/examples/fuzz_seeds
declare -A max_len
while read -r name len; do max_len[$name]=$len; done < <("$list" --list)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <("$list" --list | cut -d' ' -f1)
fi
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$list" "$seeds" > /dev/null
# Built once: a session runs the binary, so editing the code meanwhile changes nothing here.
cargo +nightly fuzz build
bin=fuzz/target/x86_64-unknown-linux-gnu/release

summary=()
failed=0
for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "no fuzz target $t" >&2; exit 2; }
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    findings() {
        find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \
            -o -name 'leak-*' \) | wc -l
    }
    before=$(findings)
    log="fuzz/artifacts/$t/last-run.log"
    : > "$log"
    started=$(date +%s)
    total=0
    new=0
    # In sessions of at most $chunk inputs, each resuming from the corpus the last one grew, so
    # that a shared lock is held minutes rather than hours at a time.
    while [ "$total" -lt "$inputs" ] && [ "$new" -eq 0 ]; do
        this=$(( inputs - total < chunk ? inputs - total : chunk ))
        run=(env ASAN_OPTIONS=detect_odr_violation=0 "$bin/$t" "-runs=$this"
            "-max_len=${max_len[$t]}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512
            -print_final_stats=1 "-artifact_prefix=fuzz/artifacts/$t/"
            "fuzz/corpus/$t" "fuzz/regressions/$t" "$seeds/$t")
        [ "$total" -gt 0 ] || echo "== $t: ${run[*]}"
        if [ -n "$lock" ]; then run=(flock "$lock" "${run[@]}"); fi
        status=0
        "${run[@]}" > "$log.part" 2>&1 || status=$?
        cat "$log.part" >> "$log"
        # The final stats (a clean end), else the last progress line (a finding stopped it).
        ran=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log.part" | tail -1)
        [ -n "$ran" ] || ran=$(grep -o '^#[0-9]*' "$log.part" | tail -1 | tr -d '#')
        total=$(( total + ${ran:-0} ))
        new=$(( $(findings) - before ))
        [ "$status" -eq 0 ] || [ "$new" -gt 0 ] || new=1
    done
    rm -f "$log.part"
    seconds=$(( $(date +%s) - started ))
    [ "$new" -eq 0 ] || failed=1
    line=$(printf '%-18s inputs %9d  findings %d  %5d s  corpus %d files' "$t" "$total" "$new" \
        "$seconds" "$(find "fuzz/corpus/$t" -type f | wc -l)")
    echo "$line"
    summary+=("$line")
    if [ "$new" -gt 0 ]; then
        grep -m4 -E 'panicked|ERROR: libFuzzer|SUMMARY|^Failing input' "$log" | sed 's/^/    /' || true
    fi
done
echo
echo "== fuzz.sh $inputs: $(date -u +%FT%TZ), $(cargo +nightly fuzz --version 2>/dev/null)"
printf '%s\n' "${summary[@]}"
exit $failed
