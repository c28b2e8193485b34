#!/usr/bin/env python
"""Run the meas_realbogus demo: simulate a survey, run SimulatedAP with pipetask, summarise."""

from lsst.meas.realbogus.cli.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
