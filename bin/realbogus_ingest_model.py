#!/usr/bin/env python
"""Store a real/bogus model package in a Butler repository (see ``--help``)."""

from lsst.meas.realbogus.cli.ingest_model import main

if __name__ == "__main__":
    raise SystemExit(main())
