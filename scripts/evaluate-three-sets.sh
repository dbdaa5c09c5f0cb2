#!/bin/bash
# The evaluation behind docs/results/: Base, Pref and the recommended steering on the Amulet
# benchmark's Personal, HelpSteer and TruthfulQA prompt sets, 256 new tokens, both lanes scored
# (so Base and Pref get a fluency under the base lane too), in three stages:
#   1. localpref's own prompts (--prompts library, what the CLI, the app and the server run),
#      with PAD at the recommended strength beside the recommended;
#   2. the Amulet paper's prompts, with PAD at the recommended strength beside the recommended;
#   3. the papers' settings (--paper) on the paper's prompts.
# Each stage first covers every set with half the prompts, so a run stopped early has some of
# every set; a stopped run resumes where it left off.
#
#   scripts/evaluate-three-sets.sh DATASETS_DIR OUT_DIR SHARD_INDEX SHARD_COUNT [PROMPTS]
#
# One process per shard, one llama.cpp thread each; on two cores:
#   scripts/evaluate-three-sets.sh ../shared/datasets runs 1 2 &
#   scripts/evaluate-three-sets.sh ../shared/datasets runs 2 2 &
# then: localpref eval merge runs/library/* --out runs/library-merged
#       localpref eval merge runs/paper/* --out runs/paper-merged
set -euo pipefail
DATASETS=$1; OUT=$2; SHARD=$3; SHARDS=$4; PROMPTS=${5:-24}
HALF=$(( (PROMPTS + 1) / 2 ))
LOCALPREF=${LOCALPREF:-localpref}
SETS="personal_preference_eval_preference_data HelpSteer_train UltraFeedback_truthful_qa"

run() {  # FOLDER SET LIMIT EXTRA...
  local folder=$1 set=$2 limit=$3; shift 3
  "$LOCALPREF" eval --dataset "$DATASETS/$set.json" --limit "$limit" \
    --shard "$SHARD/$SHARDS" --threads 1 --max-tokens 256 --score-lanes --no-progress \
    --out "$OUT/$folder/$set-$SHARD" "$@"
}

for limit in "$HALF" "$PROMPTS"; do
  for set in $SETS; do
    run library "$set" "$limit" --prompts library --methods base,pref,recommended,pad \
      --strength 0.5 --tau 0.2 --end-tokens pref
  done
done
for limit in "$HALF" "$PROMPTS"; do
  for set in $SETS; do
    run paper "$set" "$limit" --methods base,pref,recommended,pad \
      --strength 0.5 --tau 0.2 --end-tokens pref
  done
done
for limit in "$HALF" "$PROMPTS"; do
  for set in $SETS; do
    run paper "$set" "$limit" --methods base,pref,amulet,pad --paper
  done
done
