#!/bin/bash
# The evaluation behind docs/results/: the recommended steering (and PAD at the recommended
# strength) and the papers' settings on the Amulet benchmark's Personal, HelpSteer and
# TruthfulQA prompt sets, 256 new tokens, both lanes scored (fluency for Base and Pref too).
#
#   scripts/evaluate-three-sets.sh DATASETS_DIR OUT_DIR SHARD_INDEX SHARD_COUNT [PROMPTS]
#
# Run one process per shard (one llama.cpp thread each), e.g. on two cores:
#   scripts/evaluate-three-sets.sh ../shared/datasets runs 1 2 & \
#   scripts/evaluate-three-sets.sh ../shared/datasets runs 2 2 &
# then join them: localpref eval merge runs/*-[0-9]* --out runs/merged
# The recommended settings run first on all three sets; the papers' settings then come in
# stages of 8, 16 and PROMPTS prompts, so a run stopped early has some of every set.
# A run that is stopped resumes where it left off.
set -euo pipefail
DATASETS=$1; OUT=$2; SHARD=$3; SHARDS=$4; PROMPTS=${5:-24}
LOCALPREF=${LOCALPREF:-localpref}
SETS="personal_preference_eval_preference_data HelpSteer_train UltraFeedback_truthful_qa"

run() {  # SET LIMIT EXTRA...
  local set=$1 limit=$2; shift 2
  "$LOCALPREF" eval --dataset "$DATASETS/$set.json" --limit "$limit" \
    --shard "$SHARD/$SHARDS" --threads 1 --max-tokens 256 --score-lanes --no-progress \
    --out "$OUT/$set-$SHARD" "$@"
}

for set in $SETS; do
  run "$set" "$PROMPTS" --methods base,pref,recommended,pad \
    --strength 0.5 --tau 0.2 --end-tokens pref
done
for limit in 8 16 "$PROMPTS"; do
  for set in $SETS; do
    run "$set" "$limit" --methods base,pref,amulet,pad --paper
  done
done
