"""Turn a job request into the fully resolved gan_core TrainConfig stored in the job record.

The rules (presets, network, regularizer defaults, schedule, validation) are gan_core's
(gan_core.request.resolve_train_config), shared with `gan_core train`; this module maps the JSON body onto
a TrainRequest and adds the server's own policy (its kimg cap, Freeze-D only with init_from)."""

from __future__ import annotations

import math
from typing import Any

from gan_core.config import TrainConfig, config_from_dict, config_to_dict, fit_to_dataset
from gan_core.request import (
    ConfigRequestError,
    RegularizerRequest,
    TrainRequest,
    resolve_train_config,
)
from service.api.schemas.jobs import JobCreate
from service.core.settings import Settings


class JobConfigError(ValueError):
    """A request that names valid values but does not make a usable config."""


def train_request(body: JobCreate, pretrained_network: dict[str, Any] | None = None) -> TrainRequest:
    """The gan_core request a job body asks for: fields map one to one (gan_core.request holds the rules)."""
    regs = None if body.regularizers is None else [
        RegularizerRequest(spec.name, spec.weight, spec.interval, dict(spec.params)) for spec in body.regularizers]
    return TrainRequest(
        preset=body.preset, arch=body.arch, resolution=body.resolution, kimg=body.kimg, seed=body.seed,
        augment=body.augment, batch_size=body.batch_size, gpus=body.gpus, batch_gpu=body.batch_gpu,
        g_lr=body.g_lr, d_lr=body.d_lr,
        metrics=None if body.metrics is None else list(body.metrics), metrics_every=body.metrics_every,
        metrics_num_gen=body.metrics_num_gen, regularizers=regs, tick_kimg=body.tick_kimg,
        snapshot_kimg=body.snapshot_kimg, freeze_d_layers=body.freeze_d_layers or None,
        pretrained_network=pretrained_network)


def resolve_config(body: JobCreate, settings: Settings, pretrained_network: dict[str, Any] | None = None) -> TrainConfig:
    """`pretrained_network`: the network config of the job's `init_from` weights; it replaces the preset's."""
    if body.freeze_d_layers and pretrained_network is None:
        # Service policy: Freeze-D is a fine-tuning method. NVlabs' train.py accepts --freezed without --resume,
        # but then D's first layers keep their random initialisation for the whole run: a silent
        # misconfiguration, which the service refuses (gan_core's TrainConfig.freeze_d_layers allows it).
        raise JobConfigError(f"freeze_d_layers={body.freeze_d_layers} needs init_from (pretrained weights to "
                             "fine-tune): without them the frozen discriminator layers would keep their random "
                             "initialisation; drop freeze_d_layers or start from a model or another job's checkpoint")
    if body.gpus is not None and body.gpus > settings.max_job_gpus:  # what this server's workers own
        raise JobConfigError(f"gpus must be <= {settings.max_job_gpus} on this server (DIGGAN_MAX_JOB_GPUS), "
                             f"got {body.gpus}: ask for at most {settings.max_job_gpus}")
    try:
        cfg = resolve_train_config(train_request(body, pretrained_network), default_preset=settings.default_preset)
    except ConfigRequestError as e:
        raise JobConfigError(str(e)) from e
    if cfg.kimg > settings.max_kimg:
        raise JobConfigError(f"kimg must be <= {settings.max_kimg:g} on this server, got {cfg.kimg:g}")
    return cfg


def fit_config_to_dataset(config: dict[str, Any], dataset_classes: int) -> dict[str, Any]:
    """The job's config with what depends on its dataset resolved (BigGAN's num_classes = the dataset's)."""
    try:
        return config_to_dict(fit_to_dataset(config_from_dict(config), dataset_classes))
    except ValueError as e:
        raise JobConfigError(str(e)) from e


def resolve_config_dict(body: JobCreate, settings: Settings, pretrained_network: dict[str, Any] | None = None
                        ) -> dict[str, Any]:
    return config_to_dict(resolve_config(body, settings, pretrained_network))


def charged_kimg(config: dict[str, Any]) -> float:
    """What a job costs against the kimg quota: its training kimg, plus the images its snapshot metrics
    generate (metrics_num_gen per evaluated snapshot, final one included), in thousands."""
    kimg = float(config["kimg"])
    if not config.get("metrics"):
        return kimg
    snapshot_kimg = float(config.get("tick_kimg") or kimg) * int(config.get("snapshot_ticks") or 1)
    snapshots = math.ceil(kimg / snapshot_kimg) if snapshot_kimg > 0 else 1
    evaluated = snapshots // max(1, int(config.get("metrics_every") or 1)) + 1
    return kimg + evaluated * int(config.get("metrics_num_gen") or 0) / 1000.0
