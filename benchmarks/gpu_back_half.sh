#!/usr/bin/env bash
# The back half's GPU measurements on SmolLM2-135M, run side by side on one GPU (each job is
# launch-bound at this model size, so four share a card well), each with a wall-clock limit:
#   1. the half-depth student distilled from the teacher's logits (issue 8's student target),
#   2. its twin trained on cross-entropy alone, same steps and tokens,
#   3. SparseGPT 2:4 with a recovery longer than a CPU affords (issue 8's 2:4 target),
#   4. DP-SGD LoRA fine-tune at a batch in the hundreds against the plain one (issue 11).
# Results: a log and a JSON per job in OUT (8 files). Perplexity, canary exposure and sizes are measured on the machine's CPU by the benchmarks
# themselves; decode speed there is not this project's 2-core target (measure it at home).
#
#   GGUF=path/to/SmolLM2-135M-Instruct.Q4_1.gguf OUT=results/ bash benchmarks/gpu_back_half.sh
#
# Knobs (environment): JOBS (a subset of the four names below), STUDENT_STEPS, RECOVER_STEPS,
# DP_STEPS, MICRO_BATCH, LIMIT_S.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${GGUF:?GGUF: the SmolLM2-135M-Instruct .gguf file}" "${OUT:?OUT: a folder for the results}"
STUDENT_STEPS=${STUDENT_STEPS:-1500} RECOVER_STEPS=${RECOVER_STEPS:-1000} DP_STEPS=${DP_STEPS:-200}
MICRO_BATCH=${MICRO_BATCH:-64} LIMIT_S=${LIMIT_S:-480} JOBS=${JOBS:-student15 student15-ce sparsegpt24 privacy}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
WORK=${WORK:-/tmp/gpu_back_half}

train="--training-set training.train.device=cuda --training-set training.train.num_ranks=1
       --training-set training.train.precision=bf16 --training-set training.train.micro_batch_size=$MICRO_BATCH
       --training-set training.train.log_every=50 --training-set training.model.init_from=$GGUF"
measure="--init-from $GGUF --threads 4 --repeats 1 --new-tokens 8 --text wide-austen"
job() {  # name, command...
    local name=$1; shift
    [[ " $JOBS " == *" $name "* ]] || return 0
    ( timeout "$LIMIT_S" "$@" > "$OUT/$name.log" 2>&1; echo "exit $?" >> "$OUT/$name.log" ) &
}
job student15 python3 benchmarks/compression_bench.py --train --only student15 --work "$WORK/s" $measure $train \
    --training-set training.train.master_port=29601 --out "$OUT/student15.json" \
    --set "student15=[{\"distill\": {\"layers\": 15, \"steps\": $STUDENT_STEPS, \"lr\": 5e-4, \"eval_every\": 200}}]"
job student15-ce python3 benchmarks/compression_bench.py --train --only student15-ce --work "$WORK/c" $measure $train \
    --training-set training.train.master_port=29602 --out "$OUT/student15-ce.json" \
    --set "student15-ce=[{\"distill\": {\"layers\": 15, \"steps\": $STUDENT_STEPS, \"lr\": 5e-4, \"alpha\": 0.0, \"eval_every\": 200}}]"
job sparsegpt24 python3 benchmarks/compression_bench.py --train --only sparsegpt24-recovered --work "$WORK/w" $measure \
    $train --training-set training.train.master_port=29603 --out "$OUT/sparsegpt24.json" \
    --set "sparsegpt24-recovered=[\"sparsegpt24\", {\"recover\": {\"steps\": $RECOVER_STEPS, \"lr\": 2e-4}}]"
job privacy python3 benchmarks/privacy_bench.py --device cuda --docs 4000 --batch 256 --steps "$DP_STEPS" \
    --init-from "$GGUF" --threads 4 --master-port 29604 --work "$WORK/p" --out "$OUT/privacy.json"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
wait
# The training curves' ends, for a job the limit cut short; then each job's last lines.
for log in $(find "$WORK" -name train_log.jsonl); do
    [ -f "$log" ] && tail -n 2 "$log" | sed "s|^|$log: |"
done
tail -n 12 "$OUT"/*.log
