#!/usr/bin/env bash
# The hybrid ablation of docs/RESULTS.md ("Why does the hybrid lose?"): the demo's sweep
# protocol (hybrid, 5% and 20% of the digits' labels, 2 seeds, at least 300 optimizer steps,
# lr 0.003, weight decay 0.05) once per finetune recipe, both inits under the same recipe.
#
#   experiments/hybrid_recipes.sh DATA_DIR ENCODER_PT [WORKDIR]
#
# DATA_DIR: the digits as `selfie ingest --source mnist-sample` writes them; ENCODER_PT: the
# encoder of a pretraining on them (`make demo`'s: work/demo/results/selfie-demo/*-pretrain/
# encoder.pt). Each sweep prints its table; `selfie report RUN` shows one again.
set -euo pipefail
data=${1:?usage: $0 DATA_DIR ENCODER_PT [WORKDIR]}
encoder=${2:?usage: $0 DATA_DIR ENCODER_PT [WORKDIR]}
export SELFIE_WORKDIR=${3:-${SELFIE_WORKDIR:-work/ablation}}
selfie=${SELFIE_BIN:-selfie}
common=(--data "$data" --pretrained "$encoder" --architectures hybrid --fractions 0.05,0.2
        --seeds 2 --epochs 15 --min-steps 300 --search.lr 0.003 --search.weight-decay 0.05
        --experiment hybrid-recipes)
recipe() {
  local name=$1
  shift
  local start=$SECONDS
  "$selfie" sweep "${common[@]}" --run-name "$name" "$@"
  echo "recipe $name: $((SECONDS - start)) s"
}
recipe full
recipe lr-scale-0.1 --pretrained-lr-scale 0.1
recipe lp-ft-5 --lp-ft-epochs 5
recipe reinit-a --reinit-attention
recipe linear --finetune-mode linear
