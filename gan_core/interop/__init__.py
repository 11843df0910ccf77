"""Interoperability with other StyleGAN2 implementations (read-only importers)."""

from .nvlabs import NVlabsImportError, NVlabsNetworks, load_nvlabs_pkl, read_nvlabs_pickle

__all__ = ["NVlabsImportError", "NVlabsNetworks", "load_nvlabs_pkl", "read_nvlabs_pickle"]
