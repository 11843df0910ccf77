"""Interoperability with other StyleGAN2 implementations (read-only importers).

Names load lazily (PEP 562) so that `gan_core.interop.sandbox`, `.bounds` and `.errors` import
without torch: the API process runs the sandbox's parent side and never needs torch for it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NVlabsImportError", "NVlabsNetworks", "load_nvlabs_pkl", "read_nvlabs_pickle"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import nvlabs

        return getattr(nvlabs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
