"""Storage classes of the tasks' Parquet output catalogues, and the conversion to them.

The tasks build their output catalogues as `astropy.table.Table`; a config field
(``outputStorageClass``) chooses the storage class written, one of `PARQUET_STORAGE_CLASSES`
(plus, for some tasks, an ``lsst.afw`` catalogue they convert to themselves).
"""

from __future__ import annotations

__all__ = ["PARQUET_STORAGE_CLASSES", "convert_parquet_table"]

from typing import Any

from astropy.table import Table

PARQUET_STORAGE_CLASSES: dict[str, str] = {
    "ArrowAstropy": "astropy Table in Parquet (default).",
    "ArrowTable": "pyarrow Table in Parquet.",
    "DataFrame": "pandas DataFrame in Parquet.",
    "ArrowNumpy": "numpy structured array in Parquet.",
}
"""Parquet storage classes an output catalogue can be written as, with their descriptions."""


def convert_parquet_table(table: Table, storage_class: str) -> Any:
    """Convert an astropy table to the in-memory type of a Parquet storage class.

    Parameters
    ----------
    table : `astropy.table.Table`
        The catalogue.
    storage_class : `str`
        One of `PARQUET_STORAGE_CLASSES`.

    Returns
    -------
    catalog : `typing.Any`
        ``table`` itself (``ArrowAstropy``), a `pyarrow.Table` (``ArrowTable``), a
        `pandas.DataFrame` (``DataFrame``) or a numpy structured array (``ArrowNumpy``).

    Raises
    ------
    ValueError
        Raised for any other storage class.
    """
    if storage_class == "ArrowAstropy":
        return table
    if storage_class == "DataFrame":
        return table.to_pandas()
    if storage_class == "ArrowNumpy":
        return table.as_array()
    if storage_class == "ArrowTable":
        from lsst.daf.butler.formatters.parquet import astropy_to_arrow

        return astropy_to_arrow(table)
    raise ValueError(f"Unsupported output storage class {storage_class!r}")
