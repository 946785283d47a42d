#!/usr/bin/env bash
# Side-by-side benchmark of rtopt's optimiser against CVXPY (PortPy-style) on the same
# problem: TG119 with data/protocols/tg119.toml (docs/peer-benchmark.md).
#
#   benches/peer/run.sh            # 3 runs each, CVXPY with Clarabel and SCS
#   RUNS=1 SOLVERS="CLARABEL" benches/peer/run.sh
#
# Runs rtopt (export-problem, which solves the problem and records its solve time) and then
# the peer, one after the other, RUNS times each, and writes the ratio table into
# docs/benchmarks.md between the peer-benchmark markers. Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
SOLVERS=${SOLVERS:-"CLARABEL SCS"}
OUT=${OUT:-target/peer}
CASE=${CASE:-data/tg119}

py=benches/peer/.venv/bin/python
if ! "$py" -c "import cvxpy, scipy, numpy" >/dev/null 2>&1; then
  python3 -m venv benches/peer/.venv
  "$py" -m pip install -q --disable-pip-version-check -r benches/peer/requirements.txt
fi
cargo build --release --quiet
mkdir -p "$OUT"
rm -f "$OUT"/rtopt-*.json "$OUT"/peer-*.json
for i in $(seq "$RUNS"); do
  echo "rtopt run $i/$RUNS"
  ./target/release/rtopt export-problem "$CASE" --out "$OUT/export" --quiet
  cp "$OUT/export/problem.json" "$OUT/rtopt-$i.json"
done
solver_args=()
for s in $SOLVERS; do solver_args+=(--solver "$s"); done
for i in $(seq "$RUNS"); do
  echo "peer run $i/$RUNS"
  "$py" benches/peer/peer.py "$OUT/export" "${solver_args[@]}" --json "$OUT/peer-$i.json"
done
"$py" benches/peer/table.py "$OUT" --update docs/benchmarks.md
