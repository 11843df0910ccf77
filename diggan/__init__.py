"""Python client and `diggan` CLI for diggan-service.

    from diggan import DigganClient
    with DigganClient("http://127.0.0.1:8000", api_key="dg_...") as c:
        ds = c.upload_dataset("faces/")
        job = c.create_job(ds["id"], preset="cpu-tiny", kimg=1)
        for ev in c.events(job["id"]):
            ...

Only httpx (and tqdm for the CLI's progress bar): no torch, so it installs and starts fast.
"""

from diggan.client import DEFAULT_URL, DigganClient, DigganError, Event

__all__ = ["DEFAULT_URL", "DigganClient", "DigganError", "Event"]
__version__ = "0.1.0"
