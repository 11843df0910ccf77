"""Datasets: safe upload reading, conversion to a clean uint8 RGB set, storage, batches.

```python
ds = prepare_dataset("photos.zip", resolution=None, fit="crop")   # PreparedDataset
save_prepared(ds, "data/prepared.zip"); ds = load_prepared("data/prepared.zip")
for x in iterate_batches(ds.images, 8, torch.Generator().manual_seed(0), mirror=True): ...
```
"""

from __future__ import annotations

from .archive import DatasetError, DecodeBudget, UploadLimits
from .batches import BatchSampler, iterate_batches, to_float
from .loading import choose_resolution, prepare_dataset
from .prepared import PreparedDataset, load_prepared, resize_images, save_prepared
from .synthetic import make_synthetic_dataset, write_synthetic_classes, zip_folder

__all__ = [
    "BatchSampler",
    "DatasetError",
    "DecodeBudget",
    "PreparedDataset",
    "UploadLimits",
    "choose_resolution",
    "iterate_batches",
    "load_prepared",
    "make_synthetic_dataset",
    "prepare_dataset",
    "resize_images",
    "save_prepared",
    "to_float",
    "write_synthetic_classes",
    "zip_folder",
]
