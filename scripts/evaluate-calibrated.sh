#!/bin/bash
# The evaluation behind docs/results/2026-12-calibrated/: does the recommended steering, today's
# default and the model's calibrated setting, with and without the opposite in the base lane,
# beat the preference prompt (Pref)? localpref's own prompts (--prompts library), greedy,
# the first PROMPTS prompts of the Amulet benchmark's Personal, HelpSteer and TruthfulQA sets.
#
#   scripts/evaluate-calibrated.sh MODEL DATASETS_DIR OUT_DIR PROMPTS MAX_TOKENS [CALIBRATED]
#
# MODEL is a GGUF path or "bundled"; CALIBRATED is the calibrated strength and tau as
# "STRENGTH,TAU" (from `localpref calibrate --json`'s `chosen`), left out before the model is
# calibrated or when the calibration kept today's strength and tau. Per set and prompt count, in this order:
#   1. Base, Pref and today's recommended (Amulet k = 0.5, tau 0.2, end tokens from the
#      preference lane), all four preferences;
#   2. today's recommended with the preference's opposite in the base lane, one preference
#      per run (--avoid with the opposite's exact sentence: what `opposite` puts there);
#   3. the calibrated setting, with and without the opposite.
# The prompt count grows 2, 4, 6, ... up to PROMPTS over all three sets, so a run stopped early
# has the same prompts of every set; a stopped run resumes where it left off (same OUT_DIR).
# Afterwards: localpref eval merge OUT_DIR/* --out MERGED (one summary with every column).
#
# STEPS chooses among the three steps above (default "today opposite calibrated"; "anchors" runs
# only step 1's Base and Pref, for a larger run of the calibrated setting alone); CALIBRATED_LANES
# says which base lanes the calibrated setting runs with (default "neutral opposite").
# One process, one llama.cpp thread (THREADS to change it; the machine is shared), one answer at
# a time (PARALLEL=N: N answers at once in one batched decode, the same answers). SCORE_LANES=1
# also decodes the lane Base and Pref do not read (their fluency under the other lane); without
# it Pref still has its fluency under the preference lane, the lane the calibration's budget
# reads.
#
# As run for docs/results/2026-12-calibrated (a shared 2-core machine, so small):
#   SCORE_LANES=1 PREFERENCES="concise creative uplifting" STEP=4 \
#     scripts/evaluate-calibrated.sh bundled ../shared/datasets runs/ev/smol 4 256 1,0.2
#   PREFERENCES="concise creative uplifting" scripts/evaluate-calibrated.sh \
#     qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ../shared/datasets runs/ev/qwen 2 128 1,0.2
#   (stopped after Personal's k = 1 rows; then TruthfulQA alone, without the k = 1 rows:)
#   SETS=UltraFeedback_truthful_qa PREFERENCES="concise creative uplifting" \
#     scripts/evaluate-calibrated.sh qwen2.5-coder-0.5b-instruct-q4_k_m.gguf ../shared/datasets \
#     runs/ev/qwen 2 128
#   localpref calibrate [--model QWEN] --quick --limit 2 --strengths 0.5,1 --threads 1 --json
# The bundled model's folders were first seeded with December's rows
# (docs/results/2026-12-three-sets/library-*, split by set), which the first step reuses.
set -euo pipefail
MODEL=$1; DATASETS=$2; OUT=$3; PROMPTS=$4; MAX_TOKENS=$5; CALIBRATED=${6:-}
LOCALPREF=${LOCALPREF:-localpref}
SETS=${SETS:-"personal_preference_eval_preference_data HelpSteer_train UltraFeedback_truthful_qa"}
PREFERENCES=${PREFERENCES:-"concise verbose creative uplifting"}
STEP=${STEP:-2}
STEPS=${STEPS:-"today opposite calibrated"}
CALIBRATED_LANES=${CALIBRATED_LANES:-"neutral opposite"}
THREADS=${THREADS:-1}
PARALLEL=${PARALLEL:-1}

# The opposites' sentences (localpref/presets.py, OPPOSITES).
declare -A OPPOSITE=(
  [concise]="Your answer should be as detailed and thorough as possible."
  [verbose]="Your answer should be as short and to the point as possible."
  [creative]="Your answer should be as conventional and predictable as possible."
  [uplifting]="Your answer should be as bleak and gloomy as possible."
)
TODAY=(--strength 0.5 --tau 0.2 --end-tokens pref)

model_args=()
[[ $MODEL != bundled ]] && model_args=(--model "$MODEL")
lanes=()
[[ ${SCORE_LANES:-0} == 1 ]] && lanes=(--score-lanes)

run() {  # SET LIMIT EXTRA...
  local set=$1 limit=$2; shift 2
  "$LOCALPREF" eval --dataset "$DATASETS/$set.json" --limit "$limit" --prompts library \
    --threads "$THREADS" --parallel "$PARALLEL" --max-tokens "$MAX_TOKENS" --no-progress \
    "${model_args[@]}" "${lanes[@]}" \
    --out "$OUT/$set" "$@" | tail -n 1
}

limit=0
while (( limit < PROMPTS )); do
  limit=$(( limit + STEP > PROMPTS ? PROMPTS : limit + STEP ))
  for set in $SETS; do
    if [[ " $STEPS " == *" today "* ]]; then
      run "$set" "$limit" --methods base,pref,recommended "${TODAY[@]}" \
        --preferences "${PREFERENCES// /,}"
    fi
    if [[ " $STEPS " == *" anchors "* ]]; then
      run "$set" "$limit" --methods base,pref --preferences "${PREFERENCES// /,}"
    fi
    if [[ " $STEPS " == *" opposite "* ]]; then
      for preference in $PREFERENCES; do
        run "$set" "$limit" --methods recommended "${TODAY[@]}" --preferences "$preference" \
          --avoid "${OPPOSITE[$preference]}"
      done
    fi
    if [[ -n $CALIBRATED && " $STEPS " == *" calibrated "* ]]; then
      IFS=, read -r strength tau <<< "$CALIBRATED"
      calibrated=(--strength "$strength" --tau "$tau" --end-tokens pref)
      if [[ " $CALIBRATED_LANES " == *" neutral "* ]]; then
        run "$set" "$limit" --methods recommended "${calibrated[@]}" \
          --preferences "${PREFERENCES// /,}"
      fi
      if [[ " $CALIBRATED_LANES " == *" opposite "* ]]; then
        for preference in $PREFERENCES; do
          run "$set" "$limit" --methods recommended "${calibrated[@]}" \
            --preferences "$preference" --avoid "${OPPOSITE[$preference]}"
        done
      fi
    fi
  done
done
