#!/usr/bin/env bash
# Build the Dataflow worker/launcher image and the Flex Template spec.
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket infra/dataflow/build.sh
#
# Env: PROJECT, REGION, BUCKET (required); REPO (Artifact Registry repo, default biomed), TAG (default:
# the git commit), BUILDER=cloud|docker (Cloud Build, or a local docker engine + push), TORCH_INDEX_URL
# (another CUDA build of torch, see Dockerfile), LAUNCHER_IMAGE (pinned Flex launcher base, by digest),
# MODEL_DIR (a trained student directory: baked into a second image, IMAGE-model, at /models/student, so
# the launcher and every worker see it at the same path; propagate then takes model_dir=/models/student).
# Prints IMAGE=... and TEMPLATE=... for launch.sh.
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION}"
: "${BUCKET:?set BUCKET}"
REPO="${REPO:-biomed}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TAG="${TAG:-$(git -C "$ROOT" rev-parse --short HEAD)}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/${REPO}/biomed-enrich:${TAG}}"
TEMPLATE="${TEMPLATE:-gs://${BUCKET}/templates/biomed-enrich-${TAG}.json}"
BUILDER="${BUILDER:-cloud}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-https://pypi.org/simple}"
LAUNCHER_BASE="gcr.io/dataflow-templates-base/python311-template-launcher-base"
if [[ -z "${LAUNCHER_IMAGE:-}" ]]; then
  digest="$(gcloud artifacts docker images describe "${LAUNCHER_BASE}:latest" \
    --format='value(image_summary.digest)')"
  LAUNCHER_IMAGE="${LAUNCHER_BASE}@${digest}"
fi
echo "launcher base: ${LAUNCHER_IMAGE}" >&2

cd "$ROOT"
case "$BUILDER" in
  cloud)
    gcloud builds submit . --project="$PROJECT" --region="$REGION" \
      --config=infra/dataflow/cloudbuild.yaml \
      --substitutions="_IMAGE=${IMAGE},_LAUNCHER_IMAGE=${LAUNCHER_IMAGE},_TORCH_INDEX_URL=${TORCH_INDEX_URL}"
    ;;
  docker)
    DOCKER_BUILDKIT=1 docker build --file infra/dataflow/Dockerfile \
      --build-arg "LAUNCHER_IMAGE=${LAUNCHER_IMAGE}" --build-arg "TORCH_INDEX_URL=${TORCH_INDEX_URL}" \
      --tag "$IMAGE" .
    docker push "$IMAGE"
    ;;
  *)
    echo "BUILDER must be cloud or docker, not ${BUILDER}" >&2
    exit 2
    ;;
esac

if [[ -n "${MODEL_DIR:-}" ]]; then
  [[ -f "${MODEL_DIR}/config.json" ]] || { echo "MODEL_DIR has no config.json: ${MODEL_DIR}" >&2; exit 2; }
  context="$(mktemp -d)"
  trap 'rm -rf "$context"' EXIT
  cp -r "$MODEL_DIR" "${context}/student"
  printf 'FROM %s\nCOPY student /models/student\n' "$IMAGE" >"${context}/Dockerfile"
  IMAGE="${IMAGE}-model"
  if [[ "$BUILDER" == cloud ]]; then
    gcloud builds submit "$context" --project="$PROJECT" --region="$REGION" --tag="$IMAGE"
  else
    docker build --tag "$IMAGE" "$context" && docker push "$IMAGE"
  fi
fi

gcloud dataflow flex-template build "$TEMPLATE" --project="$PROJECT" \
  --image="$IMAGE" --sdk-language=PYTHON --metadata-file=infra/dataflow/metadata.json

echo "IMAGE=${IMAGE}"
echo "TEMPLATE=${TEMPLATE}"
