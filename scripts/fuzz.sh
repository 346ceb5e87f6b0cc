#!/usr/bin/env bash
# Coverage-guided fuzzing of Waybill's edge (cargo-fuzz + libFuzzer, nightly toolchain):
# the Avro decoders, the JSON envelope decoder, the embedded log's recovery and the
# control plane's request checks, each for a bounded time. Not part of `make test`.
#
#   scripts/fuzz.sh            build every target once, then run each for FUZZ_SECS
#   scripts/fuzz.sh TARGET...  only these targets (see fuzz/Cargo.toml)
#
# Environment:
#   FUZZ_SECS        seconds per target (default: 60)
#   FUZZ_SANITIZER   cargo-fuzz sanitizer: none (default; Waybill forbids unsafe code)
#                    or address
#   FUZZ_TIMEOUT     seconds one input may take before it counts as a hang (default: 10)
#   FUZZ_RSS_MB      memory limit in MiB; beyond it an input counts as a crash (default: 2048)
#
# Corpora live in fuzz/corpus/<target>, seeded by each target from the schema samples and
# real log frames; crashes, hangs and out-of-memory inputs go to fuzz/artifacts/<target>
# and make the script fail. A table of executions per target is printed at the end and
# written to fuzz/artifacts/summary.md (the figures in docs/benchmarks.md).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS="${FUZZ_SECS:-60}"
SAN="${FUZZ_SANITIZER:-none}"
TIMEOUT="${FUZZ_TIMEOUT:-10}"
RSS="${FUZZ_RSS_MB:-2048}"
ALL=(avro_event avro_command avro_journal json_event log_segment log_torn control_validate)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")

say() { echo "fuzz.sh: $*" >&2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
	say "the nightly toolchain is missing; install it with: rustup toolchain install nightly"
	exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
	say "installing cargo-fuzz from crates.io"
	cargo install cargo-fuzz --locked
fi

cd "$ROOT"
say "building the fuzz targets (sanitizer: $SAN)"
cargo +nightly fuzz build -s "$SAN"

mkdir -p fuzz/artifacts
SUMMARY=fuzz/artifacts/summary.md
{
	echo "| target | executions | execs/s | seconds | corpus (inputs) | crashes |"
	echo "|---|---:|---:|---:|---:|---:|"
} >"$SUMMARY"

failed=0
for t in "${TARGETS[@]}"; do
	corpus="fuzz/corpus/$t"
	artifacts="fuzz/artifacts/$t"
	log="fuzz/artifacts/$t.log"
	mkdir -p "$corpus" "$artifacts"
	before=$(find "$artifacts" -type f | wc -l)
	say "$t: fuzzing for ${SECS}s (log: $log)"
	start=$(date +%s)
	rc=0
	WAYBILL_FUZZ_SEEDS="$ROOT/$corpus" cargo +nightly fuzz run -s "$SAN" "$t" "$corpus" -- \
		-max_total_time="$SECS" -timeout="$TIMEOUT" -rss_limit_mb="$RSS" -print_final_stats=1 \
		>"$log" 2>&1 || rc=$?
	secs=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	size=$(find "$corpus" -type f | wc -l)
	crashes=$(($(find "$artifacts" -type f | wc -l) - before))
	if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
		failed=1
		say "$t: FAILED (exit $rc); the input is in $artifacts, the report in $log"
		say "reproduce with: cargo +nightly fuzz run -s $SAN $t <input>"
	fi
	echo "| \`$t\` | ${execs:-?} | ${rate:-?} | $secs | $size | $crashes |" >>"$SUMMARY"
done

# The log targets' scratch logs (one directory per target process).
rm -rf /dev/shm/waybill-fuzz-* "${TMPDIR:-/tmp}"/waybill-fuzz-*

cat "$SUMMARY"
exit "$failed"
