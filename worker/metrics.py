"""A worker's own Prometheus metrics, served on DIGGAN_WORKER_METRICS_PORT (0: off). The API's /metrics has
the whole-system figures from the database; these are what only the worker sees."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

CHECKPOINT_UPLOAD_SECONDS = Histogram("diggan_worker_checkpoint_upload_seconds",
                                      "Time to store one checkpoint (and its grid) in the object store",
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
CHECKPOINT_UPLOAD_FAILURES = Counter("diggan_worker_checkpoint_upload_failures_total",
                                     "Failed attempts to store or register a checkpoint (each retried)")
TICKS = Counter("diggan_worker_ticks_total", "Training ticks this worker recorded")
GPU_MEMORY_PEAK = Gauge("diggan_worker_gpu_memory_peak_bytes", "Peak GPU memory of the running job (CUDA only)")
GPUS = Gauge("diggan_worker_gpus", "GPUs this worker owns: the most a job it takes may ask for (DIGGAN_WORKER_GPUS)")
RSS_BYTES = Gauge("diggan_worker_rss_bytes", "Resident memory of this worker process at its last tick")


def serve(port: int) -> None:
    if port:
        start_http_server(port)
