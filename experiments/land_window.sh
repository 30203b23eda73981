#!/usr/bin/env bash
# Puts what one GPU window brought back (experiments/gpu_window.sh: window.tar.gz and window.txt in one folder) into
# analysis/reports/, ready to commit:
#   reports/<scale>/<sweep>/  -> analysis/reports/<scale>/<sweep>/ (whole: the window began its table from the
#                                committed report's rows, so it holds every piece finished so far)
#   window.txt + plan.txt     -> analysis/reports/<scale>/<sweep>/windows/<UTC date-time>.txt (what ran, phase by phase)
#   benchmark/                -> analysis/reports/benchmark/windows/<UTC date-time>/ (beside, not over, the
#                                committed tables: a window benchmarks a few rows, the committed table every variant)
# then redraws every report and the index from their tables (python -m lightning_electra report) and lists what
# changed. Nothing else is touched: the window's logs and run directories stay in the archive.
# A report is not replaced by one that lacks rows of it (a run and config hash the committed table has and the
# window's has not: a window started from an older report, with PRIOR=none or with other settings), nor a window
# landed twice: FORCE=1 to do it anyway.
# Usage: experiments/land_window.sh FOLDER   (e.g. the device tool's files_at)
set -euo pipefail
from=${1:?usage: experiments/land_window.sh FOLDER (holding window.tar.gz and window.txt)}
python=${PYTHON:-python3}
for f in window.tar.gz window.txt; do
  [ -f "$from/$f" ] || { echo "no $f in $from: give the folder a window's files came back to" >&2; exit 2; }
done
reports=analysis/reports
[ -d "$reports" ] || { echo "run from the repository root (no $reports here)" >&2; exit 2; }
stamp=$(sed -n 's/^date: \([0-9-]*\) \([0-9]*\):\([0-9]*\) UTC$/\1-\2\3/p' "$from/window.txt")
[ -n "$stamp" ] || { echo "$from/window.txt has no 'date: YYYY-MM-DD HH:MM UTC' line: not a window's summary" >&2; exit 2; }
unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$from/window.tar.gz" -C "$unpacked"
landed=0
for report in "$unpacked"/reports/*/*/; do
  # a report of no rows (nothing finished) would replace one of rows: the suite writes none, and none is landed
  [ -f "$report/results.csv" ] && [ "$(wc -l < "$report/results.csv")" -gt 1 ] || continue
  rel=${report#"$unpacked/reports/"}; rel=${rel%/}
  if [ "${FORCE:-0}" != 1 ]; then
    [ ! -e "$reports/$rel/windows/$stamp.txt" ] || { echo "$reports/$rel/windows/$stamp.txt exists: this window was \
landed already (FORCE=1 to land it again)" >&2; exit 1; }
    if [ -f "$reports/$rel/results.csv" ]; then
      lost=$("$python" -c "import sys, pandas as pd; old, new = (set(pd.read_csv(f, dtype=str)[['run', 'config_hash']]\
.itertuples(index=False, name=None)) for f in sys.argv[1:]); print(' '.join(sorted(f'{r}@{h}' for r, h in old - new)))" \
        "$reports/$rel/results.csv" "$report/results.csv")
      [ -z "$lost" ] || { echo "the window's $rel table lacks runs the committed one has ($lost): it would drop them. \
Was the window started from an older report, with PRIOR=none or other settings? FORCE=1 to replace it anyway" >&2
        exit 1; }
    fi
  fi
  mkdir -p "$reports/$rel/windows"
  cp "$report"/* "$reports/$rel/"
  { cat "$from/window.txt"; [ -f "$unpacked/plan.txt" ] && { echo; echo "plan:"; cat "$unpacked/plan.txt"; }; } \
    > "$reports/$rel/windows/$stamp.txt"
  echo "[land] $reports/$rel (and windows/$stamp.txt)"
  landed=$((landed + 1))
done
if [ -d "$unpacked/benchmark" ] && [ -n "$(ls -A "$unpacked/benchmark")" ]; then
  mkdir -p "$reports/benchmark/windows/$stamp"
  cp "$unpacked"/benchmark/* "$reports/benchmark/windows/$stamp/"
  echo "[land] $reports/benchmark/windows/$stamp"
  landed=$((landed + 1))
fi
(( landed > 0 )) || { echo "the archive holds no report and no benchmark: see $from/window.txt for what ran" >&2; exit 1; }
"$python" -m lightning_electra report
git status --short -- "$reports"
