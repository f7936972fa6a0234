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
# The node's edge (resolver/edge, Go): built into .venv/bin beside idres, again only
# when its sources change; Go fetches its modules from the Go proxy into its module
# cache once. Without Go, nodes serve with the workers' own front doors (and say so).
edge_stamp=".venv/.idres-edge-built"
edge_want="$(cat resolver/edge/*.go resolver/edge/go.mod resolver/edge/go.sum | sha256sum | cut -c1-64)"
if [[ -x .venv/bin/idres-edge && -f "$edge_stamp" && "$(cat "$edge_stamp")" == "$edge_want" ]]; then
  :
elif command -v go >/dev/null; then
  echo "setup: building the node's edge (Go)" >&2
  (cd resolver/edge && CGO_ENABLED=0 go build -trimpath -o ../../.venv/bin/idres-edge .)
  echo "$edge_want" >"$edge_stamp"
else
  echo "setup: Go not found: nodes will serve without the compiled edge" >&2
fi

# The compiled checker of idres verify (sync/native, Rust with PyO3): built into .venv
# as the module idres_native, again only when its sources change; cargo fetches its
# crates from crates.io once. Without cargo, verify checks in Python (and says so).
native_stamp=".venv/.idres-native-built"
native_want="$(cat sync/native/Cargo.toml sync/native/Cargo.lock sync/native/src/*.rs | sha256sum | cut -c1-64)"
native_so="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')/idres_native.so"
if [[ -f "$native_so" && -f "$native_stamp" && "$(cat "$native_stamp")" == "$native_want" ]]; then
  :
elif command -v cargo >/dev/null; then
  echo "setup: building verify's compiled checker (Rust)" >&2
  PYO3_PYTHON="$PWD/.venv/bin/python" cargo build --release --quiet --locked \
    --manifest-path sync/native/Cargo.toml --target-dir .venv/native-target
  built=.venv/native-target/release/libidres_native.so
  [[ -f "$built" ]] || built=.venv/native-target/release/libidres_native.dylib
  # a new file renamed into place: a process that loaded the old one keeps it intact
  cp "$built" "$native_so.new" && mv -f "$native_so.new" "$native_so"
  echo "$native_want" >"$native_stamp"
else
  echo "setup: cargo not found: idres verify will check in Python" >&2
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
# setuptools reports every editable install of this layout with an "Editable installation"
# box (information, not a fault; pip shows backend warnings since 25.1). Only that
# message is filtered, in pip and in the build backend: other warnings and errors show.
PYTHONWARNINGS="ignore:Editable installation${PYTHONWARNINGS:+,$PYTHONWARNINGS}" \
  .venv/bin/python -m pip install -q --disable-pip-version-check \
  -c deploy/constraints.txt -e ".$extra" </dev/null
echo "$want" >"$stamp"
