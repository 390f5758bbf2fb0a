"""Run this project's Beam pipelines on a Dask cluster (local processes, Slurm, Kubernetes).

Beam 2.77 ships `apache_beam.runners.dask.dask_runner.DaskRunner`, but its translation loses data on
pipelines like ours (measured in tests/test_dask_runner.py, issues cited in docs/scale-out.md):
- only the branch ending in the last visited transform is computed, so every other sink (dead
  letters, the second of two writes) never runs;
- a ParDo's tagged outputs (`with_outputs`, `Partition`) all land in every consumer's input;
- outputs emitted in `finish_bundle` are dropped (the last RunInference batch of each bundle, the
  file results of `WriteToParquet`/`WriteToText`, whose finalisation then renames nothing);
- side inputs are recomputed from scratch inside every task that reads them;
- `metrics()` raises, so counters (the teacher's spend ledger, propagate's counters) are lost.

`DaskRunner` below keeps Beam's options, overrides (Create, GroupByKey, Flatten, Reshuffle) and
bag-per-PCollection approach, and translates the graph so that none of the above happens: one bag
per output tag, every leaf computed in a single `client.compute` (shared upstream tasks run once),
side inputs as whole-collection task dependencies, `finish_bundle` outputs kept, per-bundle metric
updates gathered into `result.metrics()`. Elements live in the global window at timestamp 0 (no
windowing or triggers: batch pipelines only). When no scheduler address is given, a
`dask.distributed.LocalCluster` of worker processes is started for the run and closed after it.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import apache_beam as beam
from apache_beam import DoFn
from apache_beam.metrics.execution import MetricsContainer
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import DoFnContext, DoFnInvoker, DoFnSignature, Receiver, _OutputHandler
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask.overrides import _Create, _Flatten, _GroupByKeyOnly, _Reshuffle, dask_overrides
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.counters import CounterFactory
from apache_beam.utils.windowed_value import WindowedValue

RUNNER = "pipelines.core.dask_runner.DaskRunner"
_METRICS = "__biomed_metrics__"  # the tag under which each bundle reports its metric updates


class LocalClusterOptions(PipelineOptions):
    """The cluster started for a run when neither `--dask_address` nor `--dask_scheduler_file` is set."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--dask_workers",
            type=int,
            default=2,
            help="Worker processes of the local Dask cluster started when no scheduler address is given.",
        )
        parser.add_argument(
            "--dask_threads_per_worker",
            type=int,
            default=1,
            help="Threads per local worker process (1: one DoFn instance and one model per process).",
        )


# --------------------------------------------------------------------------------- on the workers


class _TagReceiver(Receiver):
    def __init__(self, tag: str | None, out: list):
        self.tag, self.out = tag, out

    def receive(self, windowed_value: WindowedValue) -> None:
        self.out.append((self.tag, windowed_value.value))


class _Receivers(dict):
    """Tag -> receiver, created on first use; every receiver appends `(tag, value)` to one list."""

    def __init__(self):
        super().__init__()
        self.out: list = []

    def __missing__(self, tag):
        self[tag] = receiver = _TagReceiver(tag, self.out)
        return receiver


def _windowed(value: Any) -> WindowedValue:
    return value if isinstance(value, WindowedValue) else WindowedValue(value, 0, (GlobalWindow(),))


@dataclasses.dataclass
class _ParDoSpec:
    """What a worker needs to run one ParDo over a partition (pickled into its tasks)."""

    label: str
    fn: DoFn
    args: list
    kwargs: dict
    side_views: list  # (view class, view options) per side input, in the ParDo's order

    def run(self, elements, *side_values) -> list:
        """One bundle: setup, start, every element, finish (its outputs kept), teardown.

        Returns `(tag, value)` pairs (tag None = main output) and one `(_METRICS, updates)` pair.
        """
        receivers = _Receivers()
        handler = _OutputHandler(
            window_fn=GlobalWindows(),
            main_receivers=receivers[None],
            tagged_receivers=receivers,
            per_element_output_counter=None,
            output_batch_converter=None,
            process_yields_batches=False,
            process_batch_yields_elements=False,
        )
        side_inputs = [
            SideInputMap(view, options, [_windowed(v) for v in values])
            for (view, options), values in zip(self.side_views, side_values, strict=True)
        ]
        container = MetricsContainer(self.label)
        previous = statesampler.get_current_tracker()
        sampler = statesampler.StateSampler("", CounterFactory())
        statesampler.set_current_tracker(sampler)  # Metrics.counter(...).inc() finds `container` here
        with sampler.scoped_state(self.label, "process", metrics_container=container):
            invoker = DoFnInvoker.create_invoker(
                DoFnSignature(self.fn),
                handler,
                context=DoFnContext(self.label, state=None),
                side_inputs=side_inputs,
                input_args=self.args,
                input_kwargs=self.kwargs,
                user_state_context=None,
                bundle_finalizer_param=DoFn.BundleFinalizerParam(),
            )
            invoker.invoke_setup()
            invoker.invoke_start_bundle()
            for element in elements:
                invoker.invoke_process(_windowed(element))
            invoker.invoke_finish_bundle()
            invoker.invoke_teardown()
        statesampler.set_current_tracker(previous)
        return [*receivers.out, (_METRICS, container.get_cumulative())]


def _has_tag(tag, item) -> bool:
    return item[0] == tag


def _value(item):
    return item[1]


def _whole(partitions) -> list:
    return [x for part in partitions for x in part]


def _group_values(group):
    """`(key, [(key, windowed value), ...])` from the bag groupby -> `(key, [windowed values])`."""
    key, items = group
    return key, [item[1] for item in items]


def _first(item):
    return item[0]


def _task_name(label: str) -> str:
    """Dask task names from Beam labels (shown on the dashboard and in task streams)."""
    return "".join(c if c.isalnum() else "_" for c in label)[:80] or "ParDo"


def _drop(partition) -> list:
    return []


# --------------------------------------------------------------------------------- on the driver


class _Translator(PipelineVisitor):
    """Beam graph -> dask bags, one per PCollection; `result()` is the single bag to compute."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.bags: dict = {}
        self.consumed: set = set()
        self.metrics: list = []
        self.sides: dict = {}

    def visit_transform(self, node: AppliedPTransform) -> None:
        import dask.bag as db

        transform = node.transform
        pcolls = [p for p in node.main_inputs.values() if isinstance(p, beam.PCollection)]
        inputs = [self.bags[p] for p in pcolls]
        self.consumed.update(pcolls)
        if isinstance(transform, _Create):
            values = list(transform.values)
            out = db.from_sequence(values, npartitions=max(1, min(len(values), self.partitions)))
        elif isinstance(transform, beam.ParDo):
            self._pardo(node, inputs[0])
            return
        elif isinstance(transform, _GroupByKeyOnly):
            grouped = inputs[0].groupby(_first, npartitions=self.partitions, shuffle="tasks")
            out = grouped.map(_group_values)
        elif isinstance(transform, _Flatten):
            out = db.concat(inputs) if inputs else db.from_sequence([], npartitions=1)
        elif isinstance(transform, _Reshuffle):
            out = inputs[0].repartition(npartitions=self.partitions)
        else:
            raise NotImplementedError(
                f"{node.full_label}: {type(transform).__name__} is not supported by the Dask runner "
                "(batch pipelines of Create, ParDo, GroupByKey, Flatten and Reshuffle only)"
            )
        for pcoll in node.outputs.values():
            self.bags[pcoll] = out

    def _pardo(self, node: AppliedPTransform, main) -> None:
        transform = node.transform
        args, kwargs = transform.raw_side_inputs
        views, values = [], []
        for side in node.side_inputs:
            self.consumed.add(side.pvalue)
            views.append((type(side), side._view_options()))
            values.append(self._whole(side.pvalue))
        spec = _ParDoSpec(node.full_label, transform.fn, list(args), dict(kwargs), views)
        out = main.map_partitions(spec.run, *values, token=_task_name(node.full_label))
        for tag, pcoll in node.outputs.items():  # tag None: the main output
            self.bags[pcoll] = out.filter(partial(_has_tag, tag)).map(_value)
        self.metrics.append(out.filter(partial(_has_tag, _METRICS)).map(_value))

    def _whole(self, pcoll):
        """A PCollection as one task's list (a side input): computed once, whatever reads it.

        Built from the bag's own task keys (not `Bag.reduction`, whose Item is recomputed per reader).
        """
        import dask

        if pcoll not in self.sides:
            self.sides[pcoll] = dask.delayed(_whole)(self.bags[pcoll].to_delayed(optimize_graph=False))
        return self.sides[pcoll]

    def result(self):
        """Every unconsumed PCollection (a sink's last output) computed for its side effects, plus metrics."""
        import dask.bag as db

        leaves = [bag.map_partitions(_drop) for pcoll, bag in self.bags.items() if pcoll not in self.consumed]
        return db.concat(leaves + self.metrics)


class DaskRunner(beam_dask.DaskRunner):
    """Beam's DaskRunner with the translation above and a local cluster when no address is given."""

    def run_pipeline(self, pipeline, options):
        from dask import distributed

        connect = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(connect)
        cluster = None
        if not connect.get("address") and not connect.get("scheduler_file"):
            local = options.view_as(LocalClusterOptions)
            cluster = distributed.LocalCluster(
                n_workers=local.dask_workers,
                threads_per_worker=local.dask_threads_per_worker,
                processes=True,
                dashboard_address=None,
            )
            connect["address"] = cluster.scheduler_address
        client = distributed.Client(**connect)
        try:
            pipeline.replace_all(dask_overrides())
            partitions = bag_kwargs.get("npartitions") or max(1, sum(client.nthreads().values()))
            translator = _Translator(partitions)
            pipeline.visit(translator)
            future = client.compute(translator.result())
        except BaseException:
            _close(client, cluster)
            raise
        return DaskResult(client, cluster, future)


def _close(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


class DaskResult(PipelineResult):
    """Waits for the run's single future, gathers metric updates, then closes what the run opened."""

    def __init__(self, client, cluster, future):
        super().__init__(PipelineState.RUNNING)
        self.client, self.cluster, self.future = client, cluster, future
        self._metrics = DirectMetrics()

    def wait_until_finish(self, duration=None) -> str:
        if self._state != PipelineState.RUNNING:
            return self._state
        try:
            updates = self.future.result(timeout=duration / 1000 if duration else None)
        except TimeoutError:
            return self._state
        except BaseException:
            self._state = PipelineState.FAILED
            _close(self.client, self.cluster)
            raise
        for update in updates:
            self._metrics.commit_logical(None, update)
            self._metrics.commit_physical(None, update)
        self._state = PipelineState.DONE
        _close(self.client, self.cluster)
        return self._state

    def cancel(self) -> str:
        self.future.cancel()
        _close(self.client, self.cluster)
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self) -> DirectMetrics:
        return self._metrics
