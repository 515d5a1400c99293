#!/usr/bin/env bash
# Issue 23's measurements on this CPU, in order of priority, as one queue that many sessions share:
# every stage is idempotent (a run with a test report is skipped, a partial run resumes exactly
# from MODEL_DIR's newest checkpoint, a finished one trains nothing), so a session that ends mid-run
# loses at most one checkpoint period, and the next session starts the same command again.
#
#   nohup bash benchmarks/queue_issue23.sh > runs/logs/queue_issue23.log 2>&1 &
#   bash benchmarks/queue_issue23.sh claim_s1 tiger_sports   # chosen stages, in the order given
#
# Stages, all of them in this order (the default runs those still to measure: the list at the bottom);
# each one's minutes on 2 cores, evaluation included:
#   claim_s0 claim_s1 claim_s2  the paper's claim, one training seed of its three arms: rec, rec+aux at
#                     equal steps, rec+aux at rec's retrieval windows (gin/repro/claim; ~38 + 38 + 60)
#   sports_twin sports_twin_s1 toys_twin  the compact recipe on unbalanced and balanced collaborative IDs,
#                     training seed 0 (runs/repro/<d>_compact_*) or 1 (*_s1) (~2 x 22 each)
#   baselines         popularity and the in-repo SASRec on Sports and Toys, per-user predictions (~15)
#   claim_last        every evaluated claim run again at its last step, into test_last/ (~3 each)
#   tiger_sports tiger_toys  TIGER's configuration, one-session schedule (gin/baselines/tiger_*_cpu.gin; ~150 each)
#   ids_beauty        the compact recipe on Beauty's semantic vs collaborative IDs at equal windows (~2 x 45)
#   single_s0         each auxiliary task alone with rec (gin/repro/claim/rec_{mim,mlm,bpr}.gin; ~3 x 38)
#   tiger_beauty_long TIGER's configuration on Beauty, the CPU schedule stretched to 8,000 steps (~23 passes;
#                     ~8 h over several sessions through exact resume: item 2's run to convergence). Last:
#                     it needs a machine that keeps runs/ between sessions, which not every session has
# Logs: runs/logs/<run>.log, runs/logs/<run>_eval.log. Figures: benchmarks/RESULTS.md (issue 23).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/bin/activate ] && . .venv/bin/activate
mkdir -p runs/logs

prepared() {  # prepared DATASET: data/DATASET from ../shared/data
  [ -d "data/$1" ] || recjax prepare --format p5 --src "../shared/data/$1" --out "data/$1" --no-tfds
}

indexed() {  # indexed DATASET SCHEME_DIR ARGS...: data/DATASET_SCHEME_DIR by recjax index ARGS
  local d=$1 out=data/$1_$2; shift 2
  prepared "$d" && { [ -d "$out" ] || recjax index "$@" --src "data/$d" --out "$out"; }
}

train_eval() {  # train_eval MODEL_DIR TASK GIN_FILE [--gin.X=Y ...]: train (resumes), then test at the best step
  local dir=$1 task=$2 gin=$3 name; shift 3
  name=$(echo "${dir#runs/}" | tr / _)
  [ -f "$dir/test/metrics.json" ] && { echo "$dir: evaluated, skipped"; return 0; }
  echo "$(date -u +%FT%TZ) train $dir"
  /usr/bin/time -v recjax train --gin_file="$gin" "$@" --gin.MODEL_DIR="'$dir'" >> "runs/logs/$name.log" 2>&1 || return 1
  echo "$(date -u +%FT%TZ) eval $dir"
  evaluate "$dir" best test "runs/logs/${name}_eval.log" "$task" "$gin" "$@"
}

evaluate() {  # evaluate MODEL_DIR STEP OUT_SUBDIR LOG TASK GIN_FILE [--gin.X=Y ...]: the whole test split -> MODEL_DIR/OUT_SUBDIR
  # (STEP '': recjax eval's default, the newest checkpoint)
  local dir=$1 step=$2 out=$3 log=$4 task=$5 gin=$6; shift 6
  /usr/bin/time -v recjax eval --gin_file="$gin" --gin_file=gin/runs/eval.gin "$@" --checkpoint "$dir" ${step:+--step "$step"} \
    --task "$task" --output_dir "$dir/$out" --predictions "$dir/$out/predictions.jsonl" > "$log" 2>&1
}

claim() {  # claim SEED: the three arms of gin/repro/claim at one training seed
  indexed beauty collaborative --scheme collaborative --codebook_size 32 || return 1
  train_eval "runs/claim/rec_s$1" beauty_rec gin/repro/claim/rec.gin --gin.SEED="$1" &&
  train_eval "runs/claim/aux_s$1" beauty_rec gin/repro/claim/rec_aux.gin --gin.SEED="$1" &&
  train_eval "runs/claim/aux_equal_s$1" beauty_rec gin/repro/claim/rec_aux_equal_retrieval.gin --gin.SEED="$1"
}

claim_last() {  # every evaluated claim run again at its last step (the cosine's end) -> test_last/: the
  # best-on-validation pick is noisy at 1,024 users (+-0.004), and can land mid-run (the control, seed 2: step 2,000)
  local dir arm gin
  for dir in runs/claim/*_s[0-9]; do
    [ -f "$dir/test/metrics.json" ] || continue
    [ -f "$dir/test_last/metrics.json" ] && { echo "$dir: evaluated at its last step, skipped"; continue; }
    arm=$(basename "$dir"); arm=${arm%_s[0-9]}
    case $arm in rec) gin=rec ;; aux) gin=rec_aux ;; aux_equal) gin=rec_aux_equal_retrieval ;; *) gin=rec_$arm ;; esac
    echo "$(date -u +%FT%TZ) eval $dir at its newest checkpoint"
    evaluate "$dir" '' test_last "runs/logs/claim_$(basename "$dir")_eval_last.log" beauty_rec \
      "gin/repro/claim/$gin.gin" || return 1
  done
}

single() {  # single SEED: rec + one auxiliary task, for each
  local k
  for k in mim mlm bpr; do
    train_eval "runs/claim/${k}_s$1" beauty_rec "gin/repro/claim/rec_$k.gin" --gin.SEED="$1" || return 1
  done
}

twin() {  # twin DATASET SEED: the compact recipe on unbalanced and balanced collaborative codes (seed 0: no suffix)
  indexed "$1" collaborative --scheme collaborative --codebook_size 32 &&
  indexed "$1" collaborative_balanced --scheme collaborative --codebook_size 32 --balanced || return 1
  local v suffix=_s$2
  [ "$2" = 0 ] && suffix=
  for v in collaborative collaborative_balanced; do
    train_eval "runs/repro/$1_compact_$v$suffix" "$1_retrieval" "gin/repro/$1_t5_compact.gin" \
      --gin.DATA_DIR="'data/$1_$v'" --gin.SEED="$2" || return 1
  done
}

baselines() {
  local d
  for d in sports toys; do
    prepared $d || return 1
    [ -f "runs/baselines/popularity_$d/predictions.jsonl" ] ||
      recjax baseline --model popularity --data_dir "data/$d" --out "runs/baselines/popularity_$d" || return 1
    [ -f "runs/baselines/sasrec_ss_$d/predictions.jsonl" ] ||
      recjax baseline --model sasrec --gin_file=baselines/sasrec_sampled.gin --data_dir "data/$d" \
        --out "runs/baselines/sasrec_ss_$d" > "runs/logs/sasrec_ss_$d.log" 2>&1 || return 1
  done
}

tiger() {  # tiger DATASET
  indexed "$1" semantic_rqvae --scheme semantic_rqvae --levels 3 --codebook_size 256 --embeddings text &&
  train_eval "runs/tiger/$1_cpu" "$1_retrieval" "gin/baselines/tiger_$1_cpu.gin"
}

tiger_beauty_long() {  # TIGER's configuration on Beauty annealed over 8,000 steps (~23 passes, ~8 h: several sessions)
  indexed beauty semantic_rqvae --scheme semantic_rqvae --levels 3 --codebook_size 256 --embeddings text &&
  train_eval runs/tiger/beauty_long beauty_retrieval gin/baselines/tiger_beauty_cpu.gin --gin.TRAIN_STEPS=8000 --gin.EVAL_PERIOD=500
}

ids_beauty() {
  indexed beauty collaborative --scheme collaborative --codebook_size 32 &&
  indexed beauty semantic_rqvae --scheme semantic_rqvae --levels 3 --codebook_size 256 --embeddings text || return 1
  local v
  for v in collaborative semantic_rqvae; do
    train_eval "runs/repro/beauty_compact_$v" beauty_retrieval gin/repro/beauty_t5_compact.gin \
      --gin.DATA_DIR="'data/beauty_$v'" || return 1
  done
}

stages=("$@")
# Default: what is still to measure (RESULTS holds the rest; on a machine without runs/, the measured
# stages would train again for hours, so they run only by name: claim_s0..2 sports_twin claim_last baselines
# tiger_sports tiger_toys).
[ ${#stages[@]} -eq 0 ] && stages=(ids_beauty sports_twin_s1 toys_twin single_s0 tiger_beauty_long)
for stage in "${stages[@]}"; do
  echo "$(date -u +%FT%TZ) stage $stage"
  case $stage in
    claim_s[0-9]) claim "${stage#claim_s}" ;;
    single_s[0-9]) single "${stage#single_s}" ;;
    tiger_sports|tiger_toys) tiger "${stage#tiger_}" ;;
    sports_twin|toys_twin) twin "${stage%_twin}" 0 ;;
    sports_twin_s[0-9]|toys_twin_s[0-9]) twin "${stage%_twin_s*}" "${stage#*_twin_s}" ;;
    baselines|claim_last|ids_beauty|tiger_beauty_long) $stage ;;
    *) echo "unknown stage $stage" >&2; false ;;
  esac || { echo "$(date -u +%FT%TZ) stage $stage failed (see runs/logs)" >&2; exit 1; }
done
echo "$(date -u +%FT%TZ) done"
