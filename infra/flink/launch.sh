#!/usr/bin/env bash
# Run one biomed-enrich stage on the Flink cluster of docker-compose.yml (or any Beam Flink job server).
#
#   docker compose -f infra/flink/docker-compose.yml up -d
#   infra/flink/launch.sh ingest /tmp/biomed/pmc/*.xml --output /tmp/biomed/run
#   infra/flink/launch.sh propagate /tmp/biomed/run/paragraphs --model /tmp/biomed/student --output /tmp/biomed/run
#
# Arguments after STAGE are that `biomed-enrich STAGE` command's own (see `biomed-enrich STAGE --help`);
# the portable-runner options are appended. Env: JOB_ENDPOINT (localhost:8099), ARTIFACT_ENDPOINT
# (localhost:8098), WORKER_POOL (the harness address as seen from the taskmanager, localhost:50000),
# PARALLELISM (4), EXTRA="--flag=value ..." (more Beam options). Local paths must live under BIOMED_DATA
# (mounted at the same path in the containers); gs:// and s3:// paths work as they are.
set -euo pipefail

[[ $# -ge 1 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
STAGE="$1"
shift
JOB_ENDPOINT="${JOB_ENDPOINT:-localhost:8099}"
ARTIFACT_ENDPOINT="${ARTIFACT_ENDPOINT:-localhost:8098}"
WORKER_POOL="${WORKER_POOL:-localhost:50000}"
PARALLELISM="${PARALLELISM:-4}"

host="${JOB_ENDPOINT%:*}"
port="${JOB_ENDPOINT##*:}"
if ! (exec 3<>"/dev/tcp/${host}/${port}") 2>/dev/null; then
  echo "no Beam job server at ${JOB_ENDPOINT}: start it with" >&2
  echo "  docker compose -f infra/flink/docker-compose.yml up -d" >&2
  exit 1
fi

# shellcheck disable=SC2086  # EXTRA is a list of flags
exec biomed-enrich "$STAGE" "$@" \
  --runner=PortableRunner \
  --job_endpoint="$JOB_ENDPOINT" \
  --artifact_endpoint="$ARTIFACT_ENDPOINT" \
  --environment_type=EXTERNAL \
  --environment_config="$WORKER_POOL" \
  --parallelism="$PARALLELISM" \
  ${EXTRA:-}
