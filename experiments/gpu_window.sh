#!/usr/bin/env bash
# One GPU window as one command of at most WINDOW_S seconds: a check that the whole-step CUDA graph trains as the
# uncaptured step does, the pre-training benchmark (every variant asked for beside the plain baseline, in the same
# process), the sweep's plan, then the sweep itself, PARALLEL runs at once.
# What comes back is two files in OUT, so that a lent machine's results can be committed:
#   window.tar.gz  benchmark/ (csv, md, provenance), plan.txt, reports/ (figures, summary.md), results/ (tables,
#                  sweep.json, each run's config, logs and fine-tune JSONs; no checkpoints), logs/
#   window.txt     what ran: commit, GPU, date, each phase's command, exit status and wall time
# Usage (from the repository root, data and packages in place, e.g. after ../shared/tools/device-prep):
#   experiments/gpu_window.sh OUT
#   SCALE=tiny SWEEP=training-algorithms PARALLEL=4 WINDOW_S=480 BENCH_S=200 PLAN_TIMES=0 PYTHON=python3
#   BENCH_ARGS="..."        the benchmark's own flags (default below: ELECTRA compiled as one step graph at batch 128,
#                           twice: the second row's warm-up is a warm compile cache's; beside the plain baseline eager.
#                           A compiled row costs about a minute of compilation on a fresh machine)
#   STEP_GRAPH=auto         the sweep with train.step_graph and finetune.step_graph when the check passed and the
#                           benchmark ran a step graph row (auto), always (1) or never (0)
#   BENCH_S=0               no benchmark; SWEEP=none: no plan and no sweep (a window for the benchmark alone)
#   FT_BENCH_S=150          also the GLUE fine-tuning benchmark, after the pre-training one (default 0: not run);
#   FT_BENCH_ARGS="..."     its flags (default: the scale's tasks, 3 seeds, batched with and without step graphs)
#   SWEEP_OVERRIDES="..."   key=value for the plan and the sweep (e.g. a smaller train.flops_budget to size a scale)
#   RUNS=a,b                only these runs of the sweep (a sweep in pieces, one window each)
#   PRIOR=analysis/reports  where the reports so far are: each sweep's table starts from its committed report's
#                           rows, kept while their config hashes hold, so a piece's report holds every piece, and a
#                           run already in any report (the same config hash) is not re-run (PRIOR=none: from nothing)
# What came back goes into analysis/reports/ with experiments/land_window.sh (the folder holding window.tar.gz).
# Each phase runs under `timeout`, so a phase that overruns still leaves the window's archive: the sweep gets what
# the check, the benchmarks and the plan left of WINDOW_S, less PACK_S for the archive.
set -uo pipefail
out=${1:?usage: experiments/gpu_window.sh OUT}
scale=${SCALE:-tiny}
sweep=${SWEEP:-training-algorithms}
parallel=${PARALLEL:-4}
window=${WINDOW_S:-480}
bench_s=${BENCH_S:-200}
ft_bench_s=${FT_BENCH_S:-0}
python=${PYTHON:-python3}
pack_s=${PACK_S:-20}
read -r -a bench_args <<< "${BENCH_ARGS:---variants electra,plain --batch-sizes 128,128 --compile on --step-graph on --plain-compile off --steps 20 --warmup 4}"
read -r -a ft_bench_args <<< "${FT_BENCH_ARGS:---seeds 3 --modes batched,batched-graphed}"
read -r -a overrides <<< "${SWEEP_OVERRIDES:-}"
cache=${CACHE_DIR:-$PWD/.cache}  # packed corpus, tokenised GLUE, measured rates, compiled kernels: one place
overrides+=("data.cache_dir=$cache")  # never empty, so "${overrides[@]}" is safe on any bash
work=${WORK:-$(mktemp -d)}
start=$(date +%s)
mkdir -p "$out" "$work/logs"
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$cache/inductor}  # the benchmark warms the sweep's
summary="$out/window.txt"
{
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)"
  echo "device: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU) ($(nproc) cores)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "scale: $scale  sweep: $sweep  runs: ${RUNS:-all}  parallel: $parallel  window: ${window}s  overrides: ${SWEEP_OVERRIDES:-none}"
} > "$summary"

left() { echo $(( window - ($(date +%s) - start) )); }

phase() {  # phase NAME SECONDS COMMAND...: run it under a timeout, its output in logs/NAME.log, its time in the summary
  local name=$1 limit=$2; shift 2
  if (( limit < 10 )); then echo "$name: skipped (${limit}s left)" | tee -a "$summary"; return; fi
  local t0; t0=$(date +%s)
  echo "[window] $name (at most ${limit}s): $*"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee "$work/logs/$name.log"
  local rc=${PIPESTATUS[0]}  # timeout's (124: timed out), not tee's; and tee has finished writing the log
  echo "$name: exit $rc in $(( $(date +%s) - t0 ))s$([ $rc = 124 ] && echo ' (timed out)'): $*" | tee -a "$summary"
}

cli=("$python" -m lightning_electra)
step_graph=${STEP_GRAPH:-auto}
case $step_graph in auto|0|1) ;; *) echo "STEP_GRAPH must be auto, 0 or 1, not '$step_graph'" >&2; exit 2 ;; esac
# the check decides the sweep's step graph (auto) and is a finding of its own: GPU-only tests (on a CPU, skipped)
[ "$step_graph" = auto ] && phase check "$(( 180 < $(left) ? 180 : $(left) ))" \
  "$python" -m pytest -q -rs -p no:cacheprovider tests/test_step_graph.py -k captured
(( bench_s > 0 )) || echo "benchmark: not run (BENCH_S=0)" >> "$summary"
(( bench_s > 0 )) && phase benchmark "$(( bench_s < $(left) ? bench_s : $(left) ))" "${cli[@]}" benchmark "${bench_args[@]}" --out "$work/benchmark"
(( ft_bench_s > 0 )) && phase benchmark-finetune "$(( ft_bench_s < $(left) ? ft_bench_s : $(left) ))" "${cli[@]}" \
  benchmark-finetune --scale "$scale" "${ft_bench_args[@]}" "data.cache_dir=$cache" --out "$work/benchmark"
if [ "$step_graph" = auto ]; then  # the step graph once seen training right, and measured if there was a benchmark
  step_graph=0
  grep -q "^check: exit 0" "$summary" && { (( bench_s == 0 )) || "$python" -c "import sys, pandas as p; \
f = p.read_csv(sys.argv[1]); sys.exit(not (f.step_graph.astype(str) == 'True').any())" "$work/benchmark/benchmark.csv" \
  2>/dev/null; } && step_graph=1
fi
if [ "$step_graph" = 1 ]; then
  overrides+=("train.step_graph=true")
  # GLUE's graphs replay the batched seeds over length buckets: only where the scale (and overrides) fine-tune so
  "$python" -c "import sys; from lightning_electra.runner.configs import load_config; \
f = load_config(sys.argv[1], overrides=sys.argv[2:]).finetune; sys.exit(not (f.batched_seeds and f.length_buckets))" \
    "$scale" "${overrides[@]}" 2>/dev/null && overrides+=("finetune.step_graph=true")
fi
echo "sweep step graphs: $(printf '%s\n' "${overrides[@]}" | grep -o '^[a-z]*\.step_graph' | tr '\n' ' ' || true)" \
  >> "$summary"
if [ "$sweep" != none ]; then
  # every committed report of this scale, where its sweep keeps its table and provenance: this sweep's earlier
  # pieces, and the same runs in other sweeps (by config hash), are results already and are not re-run (a WORK of
  # an earlier window keeps its own tables)
  [ "${PRIOR:-}" = none ] && priors=() || priors=("${PRIOR:-analysis/reports}/$scale"/*/)
  for prior in ${priors[@]+"${priors[@]}"}; do
    prior=${prior%/}
    [ -f "$prior/results.csv" ] && [ -f "$prior/sweep.json" ] || continue
    name=$(basename "$prior")
    [ -e "$work/results/$name/results.csv" ] && continue
    mkdir -p "$work/results/$name/$scale"
    cp "$prior/results.csv" "$work/results/$name/results.csv"
    cp "$prior/sweep.json" "$work/results/$name/$scale/sweep.json"
    echo "results so far: $prior (rows kept, and runs not re-run, while their config hashes hold)" >> "$summary"
  done
  runs=(); [ -n "${RUNS:-}" ] && runs=(--runs "$RUNS")
  plan_flags=(--parallel "$parallel" ${runs[@]+"${runs[@]}"}); [ "${PLAN_TIMES:-0}" = 1 ] || plan_flags+=(--no-time)
  phase plan 60 "${cli[@]}" plan "$sweep" --scale "$scale" "${plan_flags[@]}" "results_dir=$work/results" \
    "${overrides[@]}"
  cp "$work/logs/plan.log" "$work/plan.txt" 2>/dev/null
  phase sweep "$(( $(left) - pack_s - 20 ))" "${cli[@]}" sweep "$sweep" --scale "$scale" --parallel "$parallel" \
    ${runs[@]+"${runs[@]}"} --reports-dir "$work/reports" "results_dir=$work/results" "${overrides[@]}"
  # a sweep stopped by the window still leaves the table and report of the runs it finished (20 s kept for it)
  grep -q "^sweep: exit 0" "$summary" || phase collect 20 "${cli[@]}" sweep "$sweep" --scale "$scale" --collect \
    --parallel 1 --reports-dir "$work/reports" "results_dir=$work/results" "${overrides[@]}"
fi
echo "total: $(( $(date +%s) - start ))s" >> "$summary"
# no weights (a save the window cut leaves .last.ckpt.tmp<pid>), and under the 16 MiB a file may bring back
archive() { tar -czf "$out/window.tar.gz" -C "$work" --exclude='*.ckpt*' --exclude='*.pt' --exclude='*.pt.tmp*' \
  --exclude='*.safetensors*' --exclude='*.bin' --exclude='.*.tmp*' --exclude='tensorboard' "$@" \
  $(cd "$work" && ls -d benchmark plan.txt reports results logs 2>/dev/null); }
archive
if (( $(stat -c %s "$out/window.tar.gz") > 15 * 1024 * 1024 )); then
  echo "archive over 15 MiB: without the runs' metrics.csv" | tee -a "$summary"
  archive --exclude='metrics.csv'
fi
cat "$summary"
