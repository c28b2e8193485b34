#!/usr/bin/env python
"""Train a real/bogus model from stamp files; see `lsst.meas.realbogus.cli.train_stamps`."""

from __future__ import annotations

__all__: list[str] = []

import sys

from lsst.meas.realbogus.cli.train_stamps import main

if __name__ == "__main__":
    sys.exit(main())
