"""Beam pipeline options for the commands: the runner flags and their defaults.

A command parses its own flags and hands the rest to Beam. Without
`--runner` the pipeline runs on the DirectRunner in `multi_processing` mode
with one worker process per available CPU (`--direct_running_mode` and
`--direct_num_workers` change that) and its worker processes log warnings
and errors only (`--default_sdk_harness_log_level`). Any other runner takes its usual flags
(`--runner DataflowRunner --project ... --region ... --temp_location gs://...
--requirements_file bimer_tf/beam/requirements.txt`, `--runner FlinkRunner
--flink_master ...`, `--runner SparkRunner ...`): see docs/beam.md.
"""

from __future__ import annotations

import logging

from bimer_tf.data.process_pool import available_cpus
from bimer_tf.errors import InputError

DEFAULT_RUNNER = "DirectRunner"
DEFAULT_DIRECT_MODE = "multi_processing"
RUNNER_HELP = (
    "Beam options follow the command's own: --runner (default DirectRunner), "
    "--direct_running_mode (default multi_processing), --direct_num_workers (default: the CPUs), "
    "and any option of another runner (docs/beam.md)."
)


# Notes Beam logs on the root logger that say nothing about the run: at import,
# that the BigQuery client libraries are absent (not used here); at each model
# load, that the `resource` module is "not available" (Beam 2.77 imports it
# together with a module that needs torch, so without torch it reads as absent
# and the load's memory metric is skipped).
_BEAM_NOTES = ("apitools not found", "Resource module is not available")


class _DropBeamNotes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(note in message for note in _BEAM_NOTES)


def import_beam():
    """`apache_beam`, without its notes above (in every process that runs our
    transforms: they import this), or an InputError naming the extra."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropBeamNotes) for f in root.filters):
        root.addFilter(_DropBeamNotes())
    try:
        import apache_beam
    except ImportError:
        raise InputError(
            "apache_beam is not installed; install the beam extra: pip install -e '.[beam]'"
        ) from None
    return apache_beam


def _given(flags: list[str], name: str) -> bool:
    return any(flag == name or flag.startswith(name + "=") for flag in flags)


def pipeline_options(flags: list[str]):
    """PipelineOptions from the flags the command did not take; unknown flags are an InputError.

    Defaults: the DirectRunner, `multi_processing`, one worker per available CPU.
    """
    import_beam()
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        WorkerOptions,
        StandardOptions,
    )

    flags = list(flags)
    quiet = logging.getLogger("apache_beam.options.pipeline_options")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the unknown flags are reported below, as an error
    try:
        known = PipelineOptions(flags).get_all_options()
        everything = PipelineOptions(flags).get_all_options(retain_unknown_options=True)
    finally:
        quiet.setLevel(level)
    unknown = sorted(set(everything) - set(known))
    stray = [  # words that are neither a flag nor the value of the flag before them
        flag
        for i, flag in enumerate(flags)
        if not flag.startswith("-") and not (i and flags[i - 1].startswith("--") and "=" not in flags[i - 1])
    ]
    if unknown or stray:
        names = [f"--{name}" for name in unknown] + stray
        raise InputError(
            f"unknown option {', '.join(names)}: neither this command's nor a Beam pipeline option "
            "(see --help and docs/beam.md)"
        )
    options = PipelineOptions(flags)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    if is_direct(options):
        direct = options.view_as(DirectOptions)
        if not _given(flags, "--direct_running_mode"):
            direct.direct_running_mode = DEFAULT_DIRECT_MODE
        if not _given(flags, "--direct_num_workers"):
            direct.direct_num_workers = available_cpus()
        if direct.direct_num_workers < 1:
            raise InputError(f"--direct_num_workers {direct.direct_num_workers}: must be 1 or more")
        if not _given(flags, "--default_sdk_harness_log_level"):
            # The local worker processes log every connection step at INFO otherwise.
            options.view_as(WorkerOptions).default_sdk_harness_log_level = "WARNING"
    return options


def is_direct(options) -> bool:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name in (None, "DirectRunner", "direct", "BundleBasedDirectRunner", "SwitchingDirectRunner")


def describe(options) -> dict:
    """The runner settings a report records."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    runner = options.view_as(StandardOptions).runner
    described = {"runner": runner if isinstance(runner, str) else type(runner).__name__}
    if is_direct(options):
        direct = options.view_as(DirectOptions)
        described["direct_running_mode"] = direct.direct_running_mode
        described["direct_num_workers"] = direct.direct_num_workers
    return described
