#!/usr/bin/env python
"""Reproduce the shipped default model; see `lsst.meas.realbogus.cli.train_default`."""

from __future__ import annotations

__all__: list[str] = []

import sys

from lsst.meas.realbogus.cli.train_default import main

if __name__ == "__main__":
    sys.exit(main())
