#!/usr/bin/env bash
# Launch one biomed-enrich stage on Dataflow.
#
#   infra/dataflow/launch.sh STAGE name=value ...
#   infra/dataflow/launch.sh ingest    inputs=gs://B/pmc/oa_comm/xml/*.tar.gz output=gs://B/run
#   infra/dataflow/launch.sh propagate inputs=gs://B/run/paragraphs model_dir=/models/student output=gs://B/run
#   infra/dataflow/launch.sh subsets   scored=gs://B/run/scored recipe=paper output=gs://B/run/subsets
#
# name=value are the template parameters of metadata.json (lists comma-separated). Env:
#   PROJECT, REGION, BUCKET (required), IMAGE, TEMPLATE (from build.sh; TEMPLATE only for MODE=flex)
#   MODE=flex      gcloud dataflow flex-template run (default; needs nothing installed locally but gcloud)
#   MODE=direct    submit from this machine with the installed package (blocks until the job ends and
#                  writes <output>/<stage>_stats.json); needs `pip install -e '.[test]'` and credentials
#   MODE=describe  build the Dataflow job description offline into JOB_FILE (job-STAGE.json); submits
#                  nothing, needs no credentials (describe_job.py)
#   MODE=print     print the flags MODE=direct would pass to flex_main.py, one per line
#   GPU=l4|t4|a100|none   accelerator for propagate (default l4: native bf16; T4 has none, so the
#                         student runs fp32 there); other stages run on CPU workers
#   MAX_WORKERS (default 50), SERVICE_ACCOUNT, SUBNETWORK (optional), EXTRA="--flag=value ..." (appended)
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
STAGE="$1"
shift
case "$STAGE" in ingest | annotate | propagate | subsets) ;; *) usage ;; esac

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION}"
: "${BUCKET:?set BUCKET}"
: "${IMAGE:?set IMAGE (printed by build.sh)}"
MODE="${MODE:-flex}"
GPU="${GPU:-l4}"
MAX_WORKERS="${MAX_WORKERS:-50}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
JOB_NAME="biomed-${STAGE}-$(date -u +%Y%m%d-%H%M%S)"

# Beam/Dataflow pipeline options of a stage, one --name=value per line.
stage_options() {
  echo "--sdk_container_image=${IMAGE}"
  echo "--sdk_location=container"
  echo "--disk_size_gb=50"
  case "$STAGE" in
    ingest | subsets)
      echo "--machine_type=n2-standard-4"
      ;;
    annotate)
      # Remote teacher calls are I/O bound: few workers, many threads.
      echo "--machine_type=n2-standard-2"
      echo "--number_of_worker_harness_threads=16"
      ;;
    propagate)
      case "$GPU" in
        t4) echo "--machine_type=n1-standard-8"
            echo "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver" ;;
        l4) echo "--machine_type=g2-standard-8"
            echo "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver" ;;
        a100) echo "--machine_type=a2-highgpu-1g"
              echo "--dataflow_service_options=worker_accelerator=type:nvidia-tesla-a100;count:1;install-nvidia-driver" ;;
        none) echo "--machine_type=n2-standard-8" ;;
        *) echo "GPU must be t4, l4, a100 or none" >&2; exit 2 ;;
      esac
      if [[ "$GPU" != none ]]; then
        # One SDK process per GPU VM (Beam issue 22895: several processes fight over cuda:0), several
        # threads so Parquet reads, tokenisation and writes overlap the GPU; the model is loaded once.
        echo "--experiments=use_runner_v2,no_use_multiple_sdk_containers"
        echo "--number_of_worker_harness_threads=4"
      else
        echo "--experiments=use_runner_v2"
      fi
      ;;
  esac
  [[ "$STAGE" == propagate ]] || echo "--experiments=use_runner_v2"
  if [[ -n "${SERVICE_ACCOUNT:-}" ]]; then echo "--service_account_email=${SERVICE_ACCOUNT}"; fi
  if [[ -n "${SUBNETWORK:-}" ]]; then echo "--subnetwork=${SUBNETWORK}"; echo "--no_use_public_ips"; fi
  for extra in ${EXTRA:-}; do echo "$extra"; done
}

mapfile -t OPTIONS < <(stage_options)
PARAMS=("--stage=${STAGE}")
for kv in "$@"; do
  [[ "$kv" == *=* ]] || { echo "parameters are name=value, got: $kv" >&2; exit 2; }
  PARAMS+=("--${kv}")
done
if [[ "$STAGE" == propagate && "$GPU" != none && " $* " != *" batch_tokens="* ]]; then
  PARAMS+=("--batch_tokens=65536")  # GPUs want big batches; the student is small (see README)
fi
COMMON=("--project=${PROJECT}" "--region=${REGION}" "--job_name=${JOB_NAME}"
  "--temp_location=gs://${BUCKET}/tmp" "--staging_location=gs://${BUCKET}/staging"
  "--max_num_workers=${MAX_WORKERS}" "--autoscaling_algorithm=THROUGHPUT_BASED")

case "$MODE" in
  direct)
    exec python "$ROOT/infra/dataflow/flex_main.py" "${PARAMS[@]}" --runner=DataflowRunner \
      "${COMMON[@]}" "${OPTIONS[@]}"
    ;;
  print)
    printf '%s\n' "${PARAMS[@]}" --runner=DataflowRunner "${COMMON[@]}" "${OPTIONS[@]}"
    ;;
  describe)
    exec python "$ROOT/infra/dataflow/describe_job.py" "${PARAMS[@]}" "--dataflow_job_file=${JOB_FILE:-job-${STAGE}.json}" \
      "${COMMON[@]}" "${OPTIONS[@]}"
    ;;
  flex)
    : "${TEMPLATE:?set TEMPLATE (printed by build.sh)}"
    # Template parameters and pipeline options travel together as --parameters; '~' is the gcloud list
    # delimiter (^~^) because option values contain ',' ';' and ':'.
    joined=""
    for flag in "${PARAMS[@]}" "${OPTIONS[@]}"; do
      joined+="~${flag#--}"
    done
    gcloud dataflow flex-template run "$JOB_NAME" --project="$PROJECT" --region="$REGION" \
      --template-file-gcs-location="$TEMPLATE" \
      --temp-location="gs://${BUCKET}/tmp" --staging-location="gs://${BUCKET}/staging" \
      --max-workers="$MAX_WORKERS" \
      --parameters="^~^${joined#\~}"
    echo "monitor: https://console.cloud.google.com/dataflow/jobs?project=${PROJECT}"
    echo "         gcloud dataflow jobs list --project=${PROJECT} --region=${REGION} --filter=name=${JOB_NAME}"
    ;;
  *)
    echo "MODE must be flex, direct, describe or print" >&2
    exit 2
    ;;
esac
