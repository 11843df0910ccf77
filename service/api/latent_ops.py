"""What the latent, editing and mixing routes share: the generator of a job's checkpoint (StyleGAN2 only), a
latent reference resolved to a tensor, and the library's LatentError turned into a 422 with its message.

Everything here blocks (storage reads, torch); routes call it through the threadpool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from service.api.lookups import require_checkpoint
from service.api.sampling import GeneratorCache
from service.core.ids import is_valid_id
from service.core.jobs import CheckpointInfo, JobRecord
from service.core.latents import LatentRecord, LatentRepo
from service.core.projections import ProjectionRepo
from service.core.services import Core

if TYPE_CHECKING:
    import torch


def latent_repo(request: Request) -> LatentRepo:
    return request.app.state.core.latents


def projection_repo(request: Request) -> ProjectionRepo:
    return request.app.state.core.projections


@contextmanager
def latent_errors() -> Iterator[None]:
    """gan_core's LatentError / ExportError are ValueErrors whose message says what to send instead: 422."""
    from gan_core.export import ExportError
    from gan_core.latents import LatentError

    try:
        yield
    except (LatentError, ExportError) as e:
        raise HTTPException(422, str(e)) from None


def require_stylegan2_job(rec: JobRecord) -> None:
    """Refuse before any checkpoint is loaded: W-space tools need StyleGAN2's mapping/synthesis split."""
    arch = (rec.config.get("network") or {}).get("arch") or "stylegan2"
    if arch != "stylegan2":
        raise HTTPException(422, f"job {rec.id} trains a {arch} model, which has no W space: projection, latents, "
                                 "style mixing and SeFa edits work on stylegan2 jobs only")


def check_psi(psi: float, settings: Any) -> None:
    if not settings.psi_min <= psi <= settings.psi_max:
        raise HTTPException(422, f"psi must be within [{settings.psi_min:g}, {settings.psi_max:g}], got {psi:g}")


def generator_for(core: Core, cache: GeneratorCache, rec: JobRecord, ref: str) -> tuple[Any, CheckpointInfo]:
    """The EMA generator of checkpoint `ref` ('latest', 'best', a name), checked to be a StyleGAN2."""
    from gan_core.latents import require_stylegan2

    require_stylegan2_job(rec)
    ckpt = require_checkpoint(core.jobs, rec, ref)
    G = cache.for_checkpoint(rec, ckpt)  # 409 if the checkpoint does not verify or load
    with latent_errors():
        require_stylegan2(G)
    return G, ckpt


def load_latent(repo: LatentRepo, rec: JobRecord, latent_id: str) -> LatentRecord:
    lat = repo.find(rec.tenant, rec.id, latent_id) if is_valid_id(latent_id, "lat") else None
    if lat is None:
        raise HTTPException(404, f"no latent {latent_id!r} in job {rec.id}; list them with GET /v1/jobs/{rec.id}/latents")
    return lat


def latent_tensor(core: Core, lat: LatentRecord) -> torch.Tensor:
    import torch

    return torch.from_numpy(LatentRepo.load(core.store, lat))


def resolve(core: Core, rec: JobRecord, G: Any, ref: int | str, what: str) -> torch.Tensor:
    """A request's latent reference as [1, num_ws, w_dim] (untruncated): a seed's w, or a saved latent's values,
    checked against G's shape (LatentError: 422)."""
    from gan_core.latents import to_ws, w_from_seeds

    if isinstance(ref, bool) or not isinstance(ref, (int, str)):
        raise HTTPException(422, f"{what}: give a seed (an integer) or a latent id (\"lat_...\")")
    with latent_errors():
        if isinstance(ref, int):
            if not 0 <= ref <= 2**32 - 1:
                raise HTTPException(422, f"{what}: a seed must be in [0, 2^32 - 1], got {ref}")
            return to_ws(G, w_from_seeds(G, [ref], 1.0))
        if not ref.startswith("lat_"):
            raise HTTPException(422, f"{what}: give a seed (an integer) or a latent id (\"lat_...\"), got {ref[:80]!r}")
        w = latent_tensor(core, load_latent(core.latents, rec, ref))
        ws = to_ws(G, w)
        if len(ws) != 1:
            raise HTTPException(422, f"{what}: latent {ref} holds {len(ws)} latents; use a single one")
        return ws


def png_of(images: torch.Tensor) -> bytes:
    """uint8 [1, 3, R, R] -> PNG bytes."""
    from gan_core.sampling import to_pil_list
    from service.api.sampling import png_bytes

    return png_bytes(to_pil_list(images)[0])


def gif_of(frames: list[Any], duration_ms: int, boomerang: bool) -> bytes:
    import io

    if boomerang and len(frames) > 2:
        frames = frames + frames[-2:0:-1]  # back again, without repeating either end
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return buf.getvalue()
