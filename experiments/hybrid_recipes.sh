#!/usr/bin/env bash
# The hybrid ablation of docs/RESULTS.md ("Why does the hybrid lose?"): the demo's sweep
# protocol (hybrid, 2 seeds, at least 300 optimizer steps, lr 0.003, weight decay 0.05) once
# per finetune recipe, both inits under the same recipe (re-initialising A changes only the
# selfie arm, so that recipe runs it alone).
#
#   experiments/hybrid_recipes.sh DATA_DIR ENCODER_PT [WORKDIR]
#
# DATA_DIR: the digits as `selfie ingest --source mnist-sample` writes them; ENCODER_PT: the
# encoder of a pretraining on them (`make demo`'s: work/demo/results/selfie-demo/*-pretrain/
# encoder.pt). FRACTIONS (default 0.05,0.2) and RECIPES (default: all, in this order: full
# lr-scale-0.1 lp-ft-5 reinit-a linear) narrow it. Each sweep prints its table and its wall
# time; `selfie report RUN` shows a table again (runs are named RECIPE-fFRACTIONS).
set -euo pipefail
data=${1:?usage: $0 DATA_DIR ENCODER_PT [WORKDIR]}
encoder=${2:?usage: $0 DATA_DIR ENCODER_PT [WORKDIR]}
export SELFIE_WORKDIR=${3:-${SELFIE_WORKDIR:-work/ablation}}
selfie=${SELFIE_BIN:-selfie}
fractions=${FRACTIONS:-0.05,0.2}
recipes=${RECIPES:-full lr-scale-0.1 lp-ft-5 reinit-a linear}
common=(--data "$data" --pretrained "$encoder" --architectures hybrid --fractions "$fractions"
        --seeds 2 --epochs 15 --min-steps 300 --search.lr 0.003 --search.weight-decay 0.05
        --experiment hybrid-recipes)
declare -A flags=(
  [full]=""
  [lr-scale-0.1]="--pretrained-lr-scale 0.1"
  [lp-ft-5]="--lp-ft-epochs 5"
  [reinit-a]="--reinit-attention --inits selfie"
  [linear]="--finetune-mode linear"
)
for name in $recipes; do
  start=$SECONDS
  # shellcheck disable=SC2086 # the recipe's flags split on spaces
  "$selfie" sweep "${common[@]}" --run-name "$name-f${fractions//,/-}" ${flags[$name]}
  echo "recipe $name: $((SECONDS - start)) s"
done
