"""Datasets: records, and turning an upload into a stored, prepared dataset."""

from .records import DatasetRecord, DatasetRepo

__all__ = ["DatasetRecord", "DatasetRepo"]
