#!/usr/bin/env bash
# The main job (README's first command): set up .venv, then run the whole loop on the embedded model
# smollm2-135m with the bundled samples, and write a report:
#   1 vocab   : a small Chinese SentencePiece vocab, merged into SmolLM2's tokenizer; tokens per character
#               before and after the merge, on the training text and on the held-out text
#   2 pretrain: QLoRA continued pretraining with the expanded tokenizer (embeddings trained), once per seed
#   3 sft     : multi-turn QLoRA SFT continuing from 2, once per seed
#   4 bpc     : bits per character on samples/heldout_zh.txt (never trained on) of the base model, of the
#               base with the expanded vocabulary before training, and of each seed's pretrained and SFT
#               model: the report's headline; the seeds' spread is its run-to-run noise
#   5 cmmlu   : CMMLU smoke run (--limit) for the base and the tuned model
#   6 leaderb.: Open LLM Leaderboard smoke run (--limit) for the base and the tuned model
#   7 generate: answers on eval_sets/zh130.jsonl from the base and the tuned model, for the judges
#   8 report  : firefly-eval report -> reports/main/REPORT.md
# One line per stage on the console (its time and result); each stage's own output (training, OpenCompass,
# lm-eval, transformers) goes to OUT/logs/<stage>.log, and a failing stage prints the end of its log.
# Every stage is skipped when its output is complete, so a rerun resumes where it stopped.
#
# Usage: bash scripts/main_job.sh [--data-dir DIR] [--out runs/main] [--report reports/main/REPORT.md]
#   --data-dir DIR: real benchmark data instead of the bundled mini sets: DIR/cmmlu (CMMLU dev/ + test/)
#                   and DIR/english (mmlu/, arc_challenge/, hellaswag/, truthfulqa/).
# Sizes are environment variables: PRETRAIN_STEPS, SFT_STEPS, SEEDS ("42 43": the first seed's runs are the
# tuned model; each further seed measures the noise), VOCAB_SIZE, CMMLU_LIMIT, LEADERBOARD_LIMIT,
# MAX_NEW_TOKENS, GENERATE_BATCH.
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

# Sizes chosen to stay under 10 minutes on 2 cores (535 s measured on a quiet machine; per stage: docs/report.md).
PRETRAIN_STEPS=${PRETRAIN_STEPS:-12}
SFT_STEPS=${SFT_STEPS:-8}
SEEDS=${SEEDS:-"42 43"}
VOCAB_SIZE=${VOCAB_SIZE:-1600}
CMMLU_LIMIT=${CMMLU_LIMIT:-1}
LEADERBOARD_LIMIT=${LEADERBOARD_LIMIT:-2}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-48}
GENERATE_BATCH=${GENERATE_BATCH:-16}
EVAL_SET=eval_sets/zh130.jsonl
HELDOUT=samples/heldout_zh.txt
BASE=smollm2-135m

bash scripts/setup.sh
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export FIREFLY_CACHE=${FIREFLY_CACHE:-$PWD/.cache/firefly}
FT=.venv/bin/firefly-train
FE=.venv/bin/firefly-eval
PY=.venv/bin/python
R=$OUT/results
LOGS=$OUT/logs
mkdir -p "$R" "$LOGS"

CMMLU_DATA=$PWD/firefly_eval/minisets/cmmlu
LEADERBOARD_DATA=$PWD/firefly_eval/minisets/english
if [ -n "$DATA_DIR" ]; then
  CMMLU_DATA=$(cd "$DATA_DIR/cmmlu" && pwd)
  LEADERBOARD_DATA=$(cd "$DATA_DIR/english" && pwd)
fi

read -r -a SEED_LIST <<< "$SEEDS"
[ ${#SEED_LIST[@]} -ge 1 ] || { echo "main_job.sh: SEEDS is empty" >&2; exit 2; }
# the first seed's runs are the tuned model; the others live in OUT/seed-N/ and only measure the noise
run_dir() { if [ "$1" = "${SEED_LIST[0]}" ]; then echo "$OUT/$2"; else echo "$OUT/seed-$1/$2"; fi; }

TIMINGS=$OUT/timings.tsv
JOB_START=$SECONDS
STAGES=8
# result FILE: the one-line result of a stage's output file
result() {
  $PY - "$1" <<'PYEOF'
import json, sys
from pathlib import Path
p = Path(sys.argv[1])
if p.name == "vocab_stats.json":
    d = json.loads(p.read_text())
    t = d["total"]["tokens_per_char"]
    print("tokens/char " + " -> ".join(f"{v:.3f} ({k})" for k, v in t.items()))
elif (p / "run_info.json").is_file():
    d = json.loads((p / "run_info.json").read_text())
    print(f"{d['steps']} steps, {d['tokens']} tokens, final loss {d['final_loss']:.3f}")
elif p.suffix == ".jsonl":
    rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()[1:] if line.strip()]
    print(f"{len(rows)} answers, {sum(r['tokens'] for r in rows) / max(1, len(rows)):.1f} tokens on average")
elif p.suffix == ".json":
    d = json.loads(p.read_text())
    if d["kind"] == "bits_per_char":
        print(f"{d['bits_per_char']:.3f} bits/char, {d['tokens_per_char']:.3f} tokens/char")
    elif d["kind"] == "cmmlu":
        print(f"average {d['average']:.2f} on {d['n_questions']} questions (smoke run, not a result)")
    else:
        print(f"average {d['average']:.2f}, {sum(t.get('n') or 0 for t in d['tasks'].values())} questions "
              "(smoke run, not a result)")
else:
    print(p)
PYEOF
}
# stage N NAME OUTPUT DONE_TEST... -- COMMAND...: run COMMAND unless DONE_TEST succeeds, its output into
# LOGS/<name>.log; print one line with its time and result (OUTPUT read by `result`).
stage() {
  local n=$1 name=$2 output=$3; shift 3
  local test=()
  while [ "$1" != "--" ]; do test+=("$1"); shift; done
  shift
  local label
  label=$(printf '[main %d/%d] %-24s' "$n" "$STAGES" "$name")
  if "${test[@]}"; then
    echo "$label skipped (complete): $(result "$output")"
    return 0
  fi
  local log t0=$SECONDS
  log=$LOGS/$(echo "$name" | tr 'A-Z' 'a-z' | sed -E 's/[^a-z0-9]+/-/g; s/^-|-$//g').log
  [ -t 1 ] && printf '%s running (log: %s) ...' "$label" "$log"
  if ! "$@" >"$log" 2>&1; then
    [ -t 1 ] && echo
    echo "$label FAILED after $(( SECONDS - t0 ))s; the end of $log:" >&2
    tail -n 40 "$log" >&2
    echo "(full log: $log)" >&2
    exit 1
  fi
  printf '%s\t%s\t%d\n' "$n" "$name" $(( SECONDS - t0 )) >> "$TIMINGS"
  [ -t 1 ] && printf '\r\033[K'
  printf '%s %4ds: %s\n' "$label" $(( SECONDS - t0 )) "$(result "$output")"
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

echo "Main job: $OUT (logs in $LOGS), report $REPORT"
# 1. vocabulary expansion
V=$OUT/vocab
stage 1 "vocab train" "$V/sp/chinese_sp.model" is_file "$V/sp/chinese_sp.model" -- \
  $FT vocab train --corpus samples/vocab_zh.txt --vocab-size "$VOCAB_SIZE" -o "$V/sp"
stage 1 "vocab merge" "$V/smollm2-135m-zh" is_file "$V/smollm2-135m-zh/tokenizer_config.json" -- \
  $FT vocab merge --base "$BASE" --add "$V/sp/chinese_sp.model" -o "$V/smollm2-135m-zh"
stage 1 "vocab stats" "$R/vocab_stats.json" is_file "$R/vocab_stats.json" -- \
  $FT vocab stats --tokenizer "$BASE" --tokenizer "$V/smollm2-135m-zh" \
      --corpus samples/pretrain_zh.jsonl "$HELDOUT" --json "$R/vocab_stats.json"

# 2-3. training, once per seed (an interrupted run resumes from its last checkpoint)
for seed in "${SEED_LIST[@]}"; do
  pt=$(run_dir "$seed" pretrain) sft=$(run_dir "$seed" sft)
  stage 2 "pretrain (seed $seed)" "$pt" checkpoint_done "$pt" -- \
    $FT pretrain --config configs/main_job/pretrain.yaml --tokenizer "$V/smollm2-135m-zh" \
      --max_steps "$PRETRAIN_STEPS" --seed "$seed" -o "$pt"
  stage 3 "sft (seed $seed)" "$sft" checkpoint_done "$sft" -- \
    $FT sft --config configs/main_job/sft.yaml --model "$pt" --max_steps "$SFT_STEPS" --seed "$seed" -o "$sft"
done

# 4. bits per character on the held-out text: the base; the base with the expanded vocabulary before any
# training (its new embedding rows initialised as pretraining initialises them); each seed's pretrained and
# SFT model
BPC=()
bpc() {  # bpc STAGE_NAME LABEL FILE ARGS... (results that share a LABEL are one model's seeds)
  local name=$1 label=$2 file=$3; shift 3
  stage 4 "$name" "$file" is_file "$file" -- $FE bits-per-char "$@" --text "$HELDOUT" -o "$file"
  BPC+=(--bpc "$label=$file")
}
bpc "bpc base" base "$R/bpc_base.json" --ckpt "$BASE"
bpc "bpc expanded (untrained)" expanded "$R/bpc_expanded.json" --ckpt "$BASE" --tokenizer "$V/smollm2-135m-zh"
for seed in "${SEED_LIST[@]}"; do
  bpc "bpc pretrained (seed $seed)" pretrained "$R/bpc_pretrained_seed$seed.json" --ckpt "$(run_dir "$seed" pretrain)"
  bpc "bpc sft (seed $seed)" sft "$R/bpc_sft_seed$seed.json" --ckpt "$(run_dir "$seed" sft)"
done

# 5-7. smoke-run benchmarks and answers for the judges: the base model and the tuned one (first seed)
for who in base tuned; do
  ckpt=$BASE
  [ $who = tuned ] && ckpt=$(run_dir "${SEED_LIST[0]}" sft)
  stage 5 "cmmlu ($who)" "$R/cmmlu_$who.json" bench_done "$R/cmmlu_$who.json" "$CMMLU_DATA" -- \
    $FE cmmlu --ckpt "$ckpt" --data-dir "$CMMLU_DATA" --limit "$CMMLU_LIMIT" -o "$R/cmmlu_$who.json"
  stage 6 "leaderboard ($who)" "$R/leaderboard_$who.json" bench_done "$R/leaderboard_$who.json" "$LEADERBOARD_DATA" -- \
    $FE leaderboard --ckpt "$ckpt" --data-dir "$LEADERBOARD_DATA" --limit "$LEADERBOARD_LIMIT" \
      -o "$R/leaderboard_$who.json"
  stage 7 "generate ($who)" "$R/answers_$who.jsonl" answers_done "$R/answers_$who.jsonl" -- \
    $FE generate --ckpt "$ckpt" --model-name "$who" --set "$EVAL_SET" --max-new-tokens "$MAX_NEW_TOKENS" \
      --batch-size "$GENERATE_BATCH" -o "$R/answers_$who.jsonl"
done

# 8. the report (always rewritten: it takes seconds); human votes are added once tallied
RUNS=()
for seed in "${SEED_LIST[@]}"; do
  RUNS+=(--run "pretrain seed $seed=$(run_dir "$seed" pretrain)" --run "sft seed $seed=$(run_dir "$seed" sft)")
done
EXTRA=()
[ -s "$R/tally.json" ] && EXTRA=(--tally "$R/tally.json")
stage 8 report "$REPORT" false -- \
  $FE report --title "Firefly main job: smollm2-135m, vocabulary expansion + QLoRA pretrain + SFT on 2 CPU cores" \
    "${RUNS[@]}" --vocab-stats "$R/vocab_stats.json" "${BPC[@]}" \
    --cmmlu "base=$R/cmmlu_base.json" --cmmlu "tuned=$R/cmmlu_tuned.json" \
    --leaderboard "base=$R/leaderboard_base.json" --leaderboard "tuned=$R/leaderboard_tuned.json" \
    --answers "$R/answers_base.jsonl" --answers "$R/answers_tuned.jsonl" "${EXTRA[@]}" -o "$REPORT"

echo
echo "Main job finished in $(( SECONDS - JOB_START ))s (per-stage seconds in $TIMINGS, logs in $LOGS)."
echo "Report: $REPORT"
echo
echo "Judge the two models' answers side by side (blind):"
echo "  .venv/bin/firefly-judge add-annotator alice --admin --db $R/votes.sqlite --set $EVAL_SET \\"
echo "      --answers $R/answers_base.jsonl $R/answers_tuned.jsonl"
echo "  .venv/bin/firefly-judge serve --db $R/votes.sqlite --set $EVAL_SET \\"
echo "      --answers $R/answers_base.jsonl $R/answers_tuned.jsonl"
echo "Then tally the votes and rerun this script: completed stages are skipped and the report gains the"
echo "human-evaluation tables:"
echo "  .venv/bin/firefly-eval tally --db $R/votes.sqlite -o $R/tally.json && bash scripts/main_job.sh --out $OUT --report $REPORT"
