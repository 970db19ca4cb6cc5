#!/usr/bin/env bash
# A fuzzing campaign: every target (or the ones named) in turn, each for
# FUZZ_RUNS executions (default 10 million) or FUZZ_SECONDS, at low priority,
# on top of its seeds and its working corpus. A crash stops only its target.
# Logs: fuzz/logs/<target>.log; then record.py writes the figures into
# docs/fuzzing.md.
set -u
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none --debug-assertions)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"/\1/p' Cargo.toml | tail -n +2)
fi
if [ -n "${FUZZ_SECONDS:-}" ]; then
    limit=(-max_total_time="$FUZZ_SECONDS")
else
    limit=(-runs="${FUZZ_RUNS:-10000000}")
fi
nice -n 15 cargo fuzz build "${flags[@]}" || exit 1
mkdir -p logs
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "$(date -u +%FT%TZ) start $target" >>logs/campaign.log
    nice -n 15 cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        "${limit[@]}" -print_final_stats=1 >"logs/$target.log" 2>&1
    status=$?
    echo "$(date -u +%FT%TZ) end $target exit $status" >>logs/campaign.log
    python3 record.py "$target"
done
