# This file is part of meas_realbogus.
"""Parsl site configurations for ``lsst.ctrl.bps.parsl`` on a single machine.

The stock `lsst.ctrl.bps.parsl.sites.Local` site lets Parsl enumerate every
network interface of the host and makes the interchange listen on all of
them.  The classes here keep all Parsl traffic on the loopback interface:

- `LoopbackLocal`: a `parsl.executors.HighThroughputExecutor` whose
  interchange binds to ``127.0.0.1`` only and whose workers connect to
  ``127.0.0.1`` only (process-based workers, the same execution model as on a
  cluster).
- `ThreadLocal`: a `parsl.executors.ThreadPoolExecutor` (no sockets at all;
  each job is still a separate ``pipetask`` process).

Both prepend the directory of the running Python interpreter to ``PATH`` in
each job, and set ``CTRL_MPEXEC_DIR`` / ``DAF_BUTLER_DIR`` to its prefix when
they are not set (EUPS sets them in a full stack), so that BPS's ``pipetask``
and ``butler`` commands resolve to the same virtual environment as ``bps``
without EUPS.

Select one in the submit YAML::

    wmsServiceClass: lsst.ctrl.bps.parsl.ParslService
    computeSite: local
    site:
      local:
        class: lsst.meas.realbogus.bps.LoopbackLocal
        cores: 2
"""

from __future__ import annotations

__all__ = ("LOOPBACK_ADDRESS", "LoopbackLocal", "ThreadLocal", "environment_prefix")

import os
import shlex
import sys
from typing import TYPE_CHECKING

import parsl.config
from lsst.ctrl.bps.parsl.configuration import get_bps_config_value
from lsst.ctrl.bps.parsl.site import SiteConfig
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor
from parsl.executors.base import ParslExecutor
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
from parsl.monitoring import MonitoringHub
from parsl.providers import LocalProvider

if TYPE_CHECKING:
    from lsst.ctrl.bps import BpsConfig
    from lsst.ctrl.bps.parsl.job import ParslJob

LOOPBACK_ADDRESS = "127.0.0.1"
"""The only address the sites of this module bind to or connect to."""

_EXECUTOR_LABEL = "local"

_WORKER_POOL_SCRIPT = "process_worker_pool.py"


def _worker_launch_cmd() -> str:
    """Return Parsl's worker-pool launch command run with this interpreter.

    Parsl's default runs ``process_worker_pool.py`` from ``PATH``, which a
    non-activated virtual environment does not provide.
    """
    if not DEFAULT_LAUNCH_CMD.startswith(_WORKER_POOL_SCRIPT):
        raise RuntimeError(f"Unexpected Parsl worker launch command: {DEFAULT_LAUNCH_CMD!r}.")
    python = shlex.quote(sys.executable)
    return (
        f"{python} -m parsl.executors.high_throughput.process_worker_pool"
        + DEFAULT_LAUNCH_CMD[len(_WORKER_POOL_SCRIPT) :]
    )


def environment_prefix() -> str:
    """Return bash commands that make jobs use this Python environment.

    Returns
    -------
    prefix : `str`
        Commands prepending the interpreter's ``bin`` directory to ``PATH``
        and defaulting ``CTRL_MPEXEC_DIR`` and ``DAF_BUTLER_DIR`` to the
        environment prefix (their ``bin/`` then holds ``pipetask`` and
        ``butler``).
    """
    bin_dir = shlex.quote(os.path.dirname(os.path.abspath(sys.executable)))
    prefix = shlex.quote(sys.prefix)
    return "\n".join(
        [
            f'export PATH={bin_dir}:"$PATH"',
            f'export CTRL_MPEXEC_DIR="${{CTRL_MPEXEC_DIR:-{prefix}}}"',
            f'export DAF_BUTLER_DIR="${{DAF_BUTLER_DIR:-{prefix}}}"',
        ]
    )


class _LocalSiteBase(SiteConfig):
    """Common behaviour of the single-machine sites.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        BPS configuration.
    resource_list : `list`, optional
        Parsl resource specification keys passed to the executor.

    Notes
    -----
    Site configuration values (``site.<computeSite>.<key>``):

    ``cores`` (`int`, required)
        Number of jobs run at once.
    ``useVenv`` (`bool`, default `True`)
        Prepend `environment_prefix` to each job's commands.
    ``run_dir`` (`str`, default ``<submitPath>/runinfo``)
        Parsl's run directory.
    ``commandPrefix``, ``environment``, ``retries``
        As for every ``lsst.ctrl.bps.parsl`` site.
    """

    def __init__(self, config: BpsConfig, resource_list: list | None = None):
        super().__init__(config, resource_list=resource_list)
        self.cores = get_bps_config_value(self.site, "cores", int, required=True)
        if self.cores < 1:
            raise ValueError(f"site.<computeSite>.cores must be at least 1, got {self.cores}.")

    def get_parsl_config(self) -> parsl.config.Config:
        """Return the Parsl configuration, with the run directory in the
        submit directory unless ``run_dir`` is set.

        Returns
        -------
        config : `parsl.config.Config`
            Parsl configuration.
        """
        config = super().get_parsl_config()
        if get_bps_config_value(self.site, "run_dir", str, None) is None:
            submit_path = get_bps_config_value(self.config, "submitPath", str, None)
            if submit_path:
                config.run_dir = os.path.join(submit_path, "runinfo")
        return config

    def get_address(self) -> str:
        """Return the address of the submit process: always loopback."""
        return LOOPBACK_ADDRESS

    def get_monitor(self) -> MonitoringHub | None:
        """Get the Parsl monitor, refused unless it can stay on loopback.

        Returns
        -------
        monitor : `parsl.monitoring.MonitoringHub` or `None`
            `None` unless ``monitorEnable`` is set in the site configuration.
        """
        if not get_bps_config_value(self.site, "monitorEnable", bool, False):
            return None
        # The base class uses get_address(), i.e. loopback here.
        return super().get_monitor()

    def get_command_prefix(self) -> str:
        """Return bash commands to run before each job's command.

        Returns
        -------
        prefix : `str`
            `environment_prefix` (unless ``useVenv`` is false) followed by the
            base class's prefix (``commandPrefix`` / ``environment``).
        """
        prefix = super().get_command_prefix()
        if get_bps_config_value(self.site, "useVenv", bool, True):
            prefix = environment_prefix() + ("\n" + prefix if prefix else "")
        return prefix

    def select_executor(self, job: ParslJob) -> str:
        """Return the label of the only executor.

        Parameters
        ----------
        job : `lsst.ctrl.bps.parsl.ParslJob`
            Job to be executed (ignored).

        Returns
        -------
        label : `str`
            The executor label.
        """
        return _EXECUTOR_LABEL


class LoopbackLocal(_LocalSiteBase):
    """Run jobs on this machine through a loopback-only Parsl
    `~parsl.executors.HighThroughputExecutor`.

    The interchange binds its worker ports to ``127.0.0.1`` (``address``),
    the executor–interchange channel uses ``127.0.0.1`` (``loopback_address``)
    and the workers are told only that address, so no socket listens on, or
    connects to, any other interface.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        BPS configuration.

    Notes
    -----
    Additional site configuration values:

    ``workerPortRange`` (`str`, default ``"54000,55000"``)
        Range of the interchange's worker ports.
    ``interchangePortRange`` (`str`, default ``"55000,56000"``)
        Range of the executor–interchange ports.
    ``heartbeatThreshold`` (`int`, default 120)
        Seconds without heartbeat before a worker is declared lost.
    """

    def __init__(self, config: BpsConfig):
        # Pass BPS's per-job "priority" to the executor, as the stock Local
        # site does; HighThroughputExecutor rejects other resource keys
        # unless it runs in MPI mode.
        super().__init__(config, resource_list=["priority"])

    def _port_range(self, key: str, default: tuple[int, int]) -> tuple[int, int]:
        value = get_bps_config_value(self.site, key, str, f"{default[0]},{default[1]}")
        try:
            low, high = (int(v) for v in str(value).split(","))
        except ValueError:
            raise ValueError(f"site.<computeSite>.{key} must be 'low,high', got {value!r}.") from None
        if not 0 < low < high < 65536:
            raise ValueError(f"site.<computeSite>.{key} is not a valid port range: {value!r}.")
        return low, high

    def get_executors(self) -> list[ParslExecutor]:
        """Return the loopback-only high-throughput executor.

        Returns
        -------
        executors : `list` [`parsl.executors.base.ParslExecutor`]
            One `~parsl.executors.HighThroughputExecutor` labelled ``local``.
        """
        return [
            HighThroughputExecutor(
                label=_EXECUTOR_LABEL,
                provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
                launch_cmd=_worker_launch_cmd(),
                interchange_launch_cmd=[sys.executable, "-m", "parsl.executors.high_throughput.interchange"],
                address=LOOPBACK_ADDRESS,
                loopback_address=LOOPBACK_ADDRESS,
                worker_port_range=self._port_range("workerPortRange", (54000, 55000)),
                interchange_port_range=self._port_range("interchangePortRange", (55000, 56000)),
                max_workers_per_node=self.cores,
                heartbeat_threshold=get_bps_config_value(self.site, "heartbeatThreshold", int, 120),
            )
        ]


class ThreadLocal(_LocalSiteBase):
    """Run jobs on this machine from a pool of threads (no sockets).

    Each job remains a separate ``pipetask`` subprocess (Parsl ``bash_app``);
    the threads only wait for them.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        BPS configuration.
    """

    def __init__(self, config: BpsConfig):
        super().__init__(config, resource_list=[])

    def get_executors(self) -> list[ParslExecutor]:
        """Return the thread-pool executor.

        Returns
        -------
        executors : `list` [`parsl.executors.base.ParslExecutor`]
            One `~parsl.executors.ThreadPoolExecutor` labelled ``local``.
        """
        return [ThreadPoolExecutor(label=_EXECUTOR_LABEL, max_threads=self.cores)]
