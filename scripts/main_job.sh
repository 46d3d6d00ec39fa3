#!/usr/bin/env bash
# The main job (README's first command): set up .venv, then run the whole loop on the embedded model
# smollm2-135m with the bundled samples, and write a report:
#   1 vocab   : a small Chinese SentencePiece vocab, merged into SmolLM2's tokenizer, + efficiency stats
#   2 pretrain: short QLoRA continued pretraining with the expanded tokenizer (embeddings trained)
#   3 sft     : short multi-turn QLoRA SFT continuing from 2
#   4 cmmlu   : CMMLU smoke run (--limit) for the base and the tuned model
#   5 leaderb.: Open LLM Leaderboard smoke run (--limit) for the base and the tuned model
#   6 generate: answers on eval_sets/zh130.jsonl from the base and the tuned model (short answers)
#   7 report  : firefly-eval report -> reports/main/REPORT.md
# Every stage is skipped when its output is complete, so a rerun resumes where it stopped.
#
# Usage: bash scripts/main_job.sh [--data-dir DIR] [--out runs/main] [--report reports/main/REPORT.md]
#   --data-dir DIR: real benchmark data instead of the bundled mini sets: DIR/cmmlu (CMMLU dev/ + test/)
#                   and DIR/english (mmlu/, arc_challenge/, hellaswag/, truthfulqa/).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=""
OUT=runs/main
REPORT=reports/main/REPORT.md
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "main_job.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

# Sizes tuned to about 8 CPU-minutes on 2 cores (measured per stage: docs/report.md).
PRETRAIN_STEPS=${PRETRAIN_STEPS:-12}
SFT_STEPS=${SFT_STEPS:-8}
VOCAB_SIZE=${VOCAB_SIZE:-1600}
CMMLU_LIMIT=${CMMLU_LIMIT:-1}
LEADERBOARD_LIMIT=${LEADERBOARD_LIMIT:-2}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-16}
EVAL_SET=eval_sets/zh130.jsonl
BASE=smollm2-135m

bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FIREFLY_CACHE=${FIREFLY_CACHE:-$PWD/.cache/firefly}
FT=.venv/bin/firefly-train
FE=.venv/bin/firefly-eval
PY=.venv/bin/python
R=$OUT/results
mkdir -p "$R"

CMMLU_DATA=$PWD/firefly_eval/minisets/cmmlu
LEADERBOARD_DATA=$PWD/firefly_eval/minisets/english
if [ -n "$DATA_DIR" ]; then
  CMMLU_DATA=$(cd "$DATA_DIR/cmmlu" && pwd)
  LEADERBOARD_DATA=$(cd "$DATA_DIR/english" && pwd)
fi

TIMINGS=$OUT/timings.tsv
JOB_START=$SECONDS
# stage N NAME DONE_TEST... -- COMMAND...: run COMMAND unless DONE_TEST succeeds; time it.
stage() {
  local n=$1 name=$2; shift 2
  local test=()
  while [ "$1" != "--" ]; do test+=("$1"); shift; done
  shift
  if "${test[@]}"; then
    echo "[main $n/7] $name: complete, skipped"
    return 0
  fi
  echo "[main $n/7] $name: running ($(( SECONDS - JOB_START ))s into the job)"
  local t0=$SECONDS
  "$@"
  printf '%s\t%s\t%d\n' "$n" "$name" $(( SECONDS - t0 )) >> "$TIMINGS"
  echo "[main $n/7] $name: done in $(( SECONDS - t0 ))s"
}
is_file() { [ -s "$1" ]; }
# a benchmark result is complete when it exists and was measured on the data asked for now
bench_done() {
  [ -s "$1" ] && $PY -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["data_dir"] != sys.argv[2])' "$1" "$2"
}
checkpoint_done() { [ -f "$1/final/firefly_checkpoint.json" ] && [ -f "$1/run_info.json" ]; }
# an answers file is complete when it holds the header plus one line per item of the set
answers_done() {
  [ -s "$1" ] && [ "$(grep -c . "$1")" -eq $(( $(grep -c . "$EVAL_SET") + 1 )) ]
}

# 1. vocabulary expansion
V=$OUT/vocab
stage 1 "vocab train" is_file "$V/sp/chinese_sp.model" -- \
  $FT vocab train --corpus samples/vocab_zh.txt --vocab-size "$VOCAB_SIZE" -o "$V/sp"
stage 1 "vocab merge" is_file "$V/smollm2-135m-zh/tokenizer_config.json" -- \
  $FT vocab merge --base "$BASE" --add "$V/sp/chinese_sp.model" -o "$V/smollm2-135m-zh"
stage 1 "vocab stats" is_file "$R/vocab_stats.json" -- \
  $FT vocab stats --tokenizer "$BASE" --tokenizer "$V/smollm2-135m-zh" \
      --corpus samples/pretrain_zh.jsonl --json "$R/vocab_stats.json"

# 2-3. training (an interrupted run resumes from its last checkpoint)
stage 2 pretrain checkpoint_done "$OUT/pretrain" -- \
  $FT pretrain --config configs/main_job/pretrain.yaml --tokenizer "$V/smollm2-135m-zh" --max_steps "$PRETRAIN_STEPS" -o "$OUT/pretrain"
stage 3 sft checkpoint_done "$OUT/sft" -- \
  $FT sft --config configs/main_job/sft.yaml --model "$OUT/pretrain" --max_steps "$SFT_STEPS" -o "$OUT/sft"

# 4-6. evaluation of the base model and the tuned one
for who in base tuned; do
  ckpt=$BASE
  [ $who = tuned ] && ckpt=$OUT/sft
  stage 4 "cmmlu ($who)" bench_done "$R/cmmlu_$who.json" "$CMMLU_DATA" -- \
    $FE cmmlu --ckpt "$ckpt" --data-dir "$CMMLU_DATA" --limit "$CMMLU_LIMIT" -o "$R/cmmlu_$who.json"
  stage 5 "leaderboard ($who)" bench_done "$R/leaderboard_$who.json" "$LEADERBOARD_DATA" -- \
    $FE leaderboard --ckpt "$ckpt" --data-dir "$LEADERBOARD_DATA" --limit "$LEADERBOARD_LIMIT" \
      -o "$R/leaderboard_$who.json"
  stage 6 "generate ($who)" answers_done "$R/answers_$who.jsonl" -- \
    $FE generate --ckpt "$ckpt" --model-name "$who" --set "$EVAL_SET" --max-new-tokens "$MAX_NEW_TOKENS" \
      -o "$R/answers_$who.jsonl"
done

# 7. the report (always rewritten: it takes a second); human votes are added once tallied
EXTRA=()
[ -s "$R/tally.json" ] && EXTRA=(--tally "$R/tally.json")
stage 7 report false -- \
  $FE report --title "Firefly main job: smollm2-135m, vocabulary expansion + QLoRA pretrain + SFT (smoke run)" \
    --run "$OUT/pretrain" --run "$OUT/sft" --vocab-stats "$R/vocab_stats.json" \
    --cmmlu "base=$R/cmmlu_base.json" --cmmlu "tuned=$R/cmmlu_tuned.json" \
    --leaderboard "base=$R/leaderboard_base.json" --leaderboard "tuned=$R/leaderboard_tuned.json" \
    --answers "$R/answers_base.jsonl" --answers "$R/answers_tuned.jsonl" "${EXTRA[@]}" -o "$REPORT"

echo
echo "Main job finished in $(( SECONDS - JOB_START ))s (per-stage seconds in $TIMINGS)."
echo "Report: $REPORT"
echo
echo "Judge the two models' answers side by side (blind):"
echo "  .venv/bin/firefly-judge add-annotator alice --admin --db $R/votes.sqlite --set $EVAL_SET \\"
echo "      --answers $R/answers_base.jsonl $R/answers_tuned.jsonl"
echo "  .venv/bin/firefly-judge serve --db $R/votes.sqlite --set $EVAL_SET \\"
echo "      --answers $R/answers_base.jsonl $R/answers_tuned.jsonl"
echo "Then tally the votes and rerun this script: completed stages are skipped and the report gains the"
echo "human-evaluation tables:"
echo "  .venv/bin/firefly-eval tally --db $R/votes.sqlite -o $R/tally.json && bash scripts/main_job.sh"
