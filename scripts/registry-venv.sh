#!/usr/bin/env bash
# The Python venv for the schema registry check (tests/registry.rs runs
# scripts/registry-check.py with it): confluent-kafka with its Schema Registry and Avro
# extras from PyPI, installed once and reused while the requirements are unchanged.
#
# Environment:
#   WAYBILL_REGISTRY_VENV   venv (default: $HOME/.cache/waybill/registry-venv)
#   PYTHON                  interpreter for the venv (default: python3, needs >= 3.9)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${WAYBILL_REGISTRY_VENV:-$HOME/.cache/waybill/registry-venv}"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/scripts/registry-check.requirements.txt"

say() { echo "registry-venv.sh: $*" >&2; }

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
stamp="$VENV/.waybill-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$VENV/bin/python" ]]; then
	exit 0
fi
command -v "$PYTHON" >/dev/null || {
	say "$PYTHON not found; install Python 3 (apt-get install -y python3 python3-venv) or set PYTHON"
	exit 1
}
say "installing confluent-kafka and its schema registry and Avro extras into $VENV (once)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || {
	say "could not create a venv with $PYTHON -m venv (Debian: apt-get install -y python3-venv)"
	exit 1
}
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS" || {
	say "pip could not install $REQS; is PyPI reachable?"
	exit 1
}
echo "$want" >"$stamp"
say "ready: $VENV"
