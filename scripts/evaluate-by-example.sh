#!/bin/bash
# The evaluation of preferences by example behind docs/results/2026-12-by-example: Base,
# Pref-with-examples (the examples in the preference lane's prompt, no contrast) and steering by
# example (the recommended steering: the same lane against the neutral base lane) for four
# styles a simple score detects (bullets, lowercase, question, summary; the style scorer), on
# localpref's own prompts, one llama.cpp thread (THREADS=N for more). A stopped run resumes where it left off.
#
#   scripts/evaluate-by-example.sh DATASET OUT_DIR LIMIT [MODEL]
#
#   scripts/evaluate-by-example.sh ../shared/datasets/koala_eval_50.json runs/smollm2 8
#   scripts/evaluate-by-example.sh ../shared/datasets/koala_eval_50.json runs/qwen05 8 \
#       ~/.cache/localpref-eval-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
#
# STRENGTH and TAU set the steering's strength and plausibility tau (a model's calibrated
# setting; default today's k = 0.5, tau 0.2).
# PARALLEL=N writes N answers at once (`localpref eval --parallel`; the same answers, sooner).
# Base does not read the examples, so BASE_ONCE=1 runs it in the first style's folder only (the
# style scorer gives every answer all four style scores).
set -euo pipefail
DATASET=$1; OUT=$2; LIMIT=$3; MODEL=${4:-}; MAX_TOKENS=${MAX_TOKENS:-128}
LOCALPREF=${LOCALPREF:-localpref}
EXAMPLES=$(dirname "$0")/../docs/results/2026-12-by-example/examples
first=1
for style in bullets lowercase question summary; do
  methods=base,pref,recommended
  if [[ "${BASE_ONCE:-}" == 1 && $first == 0 ]]; then methods=pref,recommended; fi
  first=0
  likes=()
  for file in "$EXAMPLES/$style"/*.txt; do likes+=(--like "$file"); done
  "$LOCALPREF" eval --dataset "$DATASET" --limit "$LIMIT" --threads "${THREADS:-1}" --max-tokens "$MAX_TOKENS" \
    --prompts library --methods "$methods" --reference recommended \
    ${STRENGTH:+--strength "$STRENGTH"} ${TAU:+--tau "$TAU"} ${PARALLEL:+--parallel "$PARALLEL"} \
    --scorers style,length --no-progress --bootstrap 2000 \
    ${MODEL:+--model "$MODEL"} "${likes[@]}" --like-name "$style" --out "$OUT/$style"
done
