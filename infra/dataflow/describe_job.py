"""Build a stage's Dataflow job description offline, without credentials, staging or submission.

Use it as the runner of any stage to see (and check) exactly what Dataflow would receive:

    PYTHONPATH=infra/dataflow biomed-enrich ingest ... \
        --runner=describe_job.DescribeDataflowJob --dataflow_job_file=job.json \
        --project=P --region=R --temp_location=gs://B/tmp --sdk_container_image=IMAGE ...

It runs Beam's own DataflowRunner translation with `--dry_run=True` (the runner returns before it
creates an API client), then fills in the job's `environment` (worker pools, SDK harness images,
service options, experiments) with Beam's `apiclient.Environment` exactly as `create_job_description`
does, minus the upload of the pipeline proto and packages (their URLs are recorded, nothing is sent).
The job JSON is written to `--dataflow_job_file` and the run stops with `JobDescribed`, so the stage
does no post-run bookkeeping for a job that never ran.
"""

from __future__ import annotations

import hashlib
import json

from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, TestOptions
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner


class JobDescribed(Exception):  # noqa: N818 - a signal, not an error
    """Raised after the job description is written: carries it as `job` (dict) and `path`."""

    def __init__(self, job: dict, path: str | None):
        super().__init__(f"Dataflow job described{f' in {path}' if path else ''} (not submitted)")
        self.job = job
        self.path = path


def describe(job) -> dict:
    """The full Dataflow job JSON for a dry-run `apiclient.Job`, built locally."""
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners.dataflow.internal import apiclient
    from apache_beam.runners.internal import names

    apiclient.DataflowApplicationClient._apply_sdk_environment_overrides(job.proto_pipeline, {}, job.options)
    serialized = job.proto_pipeline.SerializeToString()
    staging = job.options.view_as(GoogleCloudOptions).staging_location
    job.proto.environment = apiclient.Environment(
        proto_pipeline_staged_url=f"{staging.rstrip('/')}/{names.STAGED_PIPELINE_FILENAME}",
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline=job.proto_pipeline,
        pipeline_proto_hash=hashlib.sha256(serialized).hexdigest(),
    ).proto
    described = json.loads(job.json())
    described["pipelineTransforms"] = sorted(
        t.unique_name for t in job.proto_pipeline.components.transforms.values()
    )
    described["pipelineEnvironments"] = {
        env_id: {
            "urn": env.urn,
            "image": beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image,
        }
        for env_id, env in job.proto_pipeline.components.environments.items()
    }
    return described


class DescribeDataflowJob(DataflowRunner):
    """DataflowRunner that writes the job description to `--dataflow_job_file` instead of submitting."""

    def run_pipeline(self, pipeline, options):
        options.view_as(TestOptions).dry_run = True
        path = options.view_as(DebugOptions).dataflow_job_file
        result = super().run_pipeline(pipeline, options)
        job = describe(result.job)
        if path:
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.create(path) as f:
                f.write(json.dumps(job, indent=1, sort_keys=True).encode())
        raise JobDescribed(job, path)


def main(argv: list[str] | None = None) -> int:
    """`python describe_job.py <flex_main flags>`: describe the stage's job instead of submitting it."""
    import sys

    import describe_job as this  # the module Beam imports for `--runner`, also when run as a script
    import flex_main

    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("--runner=")]
    try:
        flex_main.main([*args, "--runner=describe_job.DescribeDataflowJob"])
    except this.JobDescribed as described:
        images = sorted(
            {p["workerHarnessContainerImage"] for p in described.job["environment"]["workerPools"]}
        )
        print(f"{described}: {len(described.job['pipelineTransforms'])} transforms, images {images}")
        return 0
    print("the stage ran instead of being described", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
