"""Seconds and memory for the sandboxed model converter on every hostile file, and on real ones.

    python bench/hostile_models.py [--out bench/results/hostile_models.json] [--nvlabs-pkl PATH ...]

For each file of tests/hostile_models.py: its size, the wall time of convert_model_upload (child
start to refusal) and the refusal message; then this (parent) process' peak RSS (VmHWM: it never
imports torch) and the largest child's (RUSAGE_CHILDREN). `--nvlabs-pkl` adds legitimate files
(e.g. a paper1024-shaped snapshot written by NVlabs' code) converted with the default limits.
Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan_core.interop.errors import PretrainedError
from gan_core.interop.sandbox import ModelUploadLimits, convert_model_upload
from tests.hostile_models import BUILDERS, FIXTURE_PKL


def _hwm_mib() -> float:
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench/results/hostile_models.json"))
    ap.add_argument("--nvlabs-pkl", type=Path, nargs="*", default=[])
    args = ap.parse_args()
    limits = ModelUploadLimits()
    result: dict = {"python": platform.python_version(),
                    "load_average": os.getloadavg(), "hostile": [], "legitimate": []}
    result["limits"] = {k: getattr(limits, k) for k in limits.__dataclass_fields__}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in BUILDERS.items():
            h = build()
            upload = Path(tmp) / f"upload{h.suffix}"
            upload.write_bytes(h.data)
            start = time.monotonic()
            try:
                convert_model_upload(upload, Path(tmp) / "out.pt", limits, label=f"model{h.suffix}")
                message = "ACCEPTED"
            except PretrainedError as exc:
                message = str(exc)
            row = {"name": name, "bytes": len(h.data), "seconds": round(time.monotonic() - start, 3),
                   "what": h.what, "message": message[:300]}
            result["hostile"].append(row)
            print(f"{name:24s} {row['bytes']:>10,d} B {row['seconds']:6.2f} s  {message[:90]!r}", flush=True)
        for pkl in [FIXTURE_PKL, *args.nvlabs_pkl]:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            got = convert_model_upload(pkl, Path(tmp) / "legit.pt", limits)
            row = {"file": pkl.name, "bytes": pkl.stat().st_size, "seconds": got.seconds, "kind": got.kind,
                   "resolution": got.resolution, "output_bytes": got.size,
                   "children_peak_rss_mib_so_far": max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024}
            result["legitimate"].append(row)
            print(f"{pkl.name}: {row['bytes']:,} B converted in {got.seconds:.2f} s", flush=True)
    result["parent_peak_rss_mib"] = round(_hwm_mib(), 1)
    result["parent_imported_torch"] = "torch" in sys.modules
    result["largest_child_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    print(f"parent peak RSS {result['parent_peak_rss_mib']} MiB (torch imported: {result['parent_imported_torch']}); "
          f"largest child {result['largest_child_peak_rss_mib']} MiB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
