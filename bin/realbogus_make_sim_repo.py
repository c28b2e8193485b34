#!/usr/bin/env python
"""Create a Butler repository of simulated SimCam visits."""

from lsst.meas.realbogus.cli.make_sim_repo import main

if __name__ == "__main__":
    raise SystemExit(main())
