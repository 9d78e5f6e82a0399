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
# allocation, -max_len from the target's table (fuzz/targets/src/lib.rs). Set SMON_FUZZ_LOCK
# to a lock file to hold it (flock) while each target runs. Before committing a corpus,
# minimise it: cargo +nightly fuzz cmin TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."

inputs=${1:-1000000}
shift || true
lock=${SMON_FUZZ_LOCK:-}

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
(cd fuzz && cargo +nightly fuzz build --quiet)

summary=()
failed=0
for t in "${targets[@]}"; do
    [ -n "${max_len[$t]:-}" ] || { echo "no fuzz target $t" >&2; exit 2; }
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    log="fuzz/artifacts/$t/last-run.log"
    started=$(date +%s)
    run=(cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "fuzz/regressions/$t" "$seeds/$t" --
        "-runs=$inputs" "-max_len=${max_len[$t]}" -timeout=10 -rss_limit_mb=2048
        -malloc_limit_mb=512 -print_final_stats=1)
    echo "== $t: ${run[*]}"
    if [ -n "$lock" ]; then run=(flock "$lock" "${run[@]}"); fi
    status=0
    "${run[@]}" > "$log" 2>&1 || status=$?
    seconds=$(( $(date +%s) - started ))
    # The final stats (a clean end), else the last progress line (a finding stopped it).
    done_runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$done_runs" ] || done_runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    findings=$(find "fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
    new=$(( findings - before < 0 ? 0 : findings - before ))
    [ "$status" -eq 0 ] || [ "$new" -gt 0 ] || new=1
    [ "$new" -eq 0 ] || failed=1
    line=$(printf '%-18s inputs %9s  findings %d  %5d s  corpus %d files' "$t" "${done_runs:-0}" \
        "$new" "$seconds" "$(find "fuzz/corpus/$t" -type f | wc -l)")
    echo "$line"
    summary+=("$line")
    if [ "$new" -gt 0 ]; then grep -m3 -E 'panicked|ERROR|SUMMARY' "$log" | sed 's/^/    /' || true; fi
done
echo
echo "== fuzz.sh $inputs: $(date -u +%FT%TZ), $(cd fuzz && cargo +nightly fuzz --version 2>/dev/null)"
printf '%s\n' "${summary[@]}"
exit $failed
