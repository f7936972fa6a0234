#!/usr/bin/env bash
# Set up idres on this machine: a virtualenv in .venv with idres installed
# (editable) at the pinned versions of deploy/constraints.txt. Idempotent.
#   deploy/setup.sh          runtime only
#   deploy/setup.sh --dev    also the test tools (pytest, hypothesis, ruff, mypy, matplotlib)
#   deploy/setup.sh --bench  also what idres bench draws its charts with (matplotlib)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY' || { echo "setup: idres needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
extra=""
[[ "${1:-}" == "--dev" ]] && extra="[dev]"
[[ "${1:-}" == "--bench" ]] && extra="[bench]"
# A stamp keyed on the inputs skips pip entirely on a warm machine.
stamp=".venv/.idres-installed$extra"
want="$(cat pyproject.toml deploy/constraints.txt | sha256sum | cut -c1-64)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "setup: installing idres$extra into .venv" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip </dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check \
  -c deploy/constraints.txt -e ".$extra" </dev/null
echo "$want" >"$stamp"
