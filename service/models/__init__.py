"""Pretrained models a tenant uploaded (our .pt checkpoints, NVlabs pkls) for jobs to start from."""

from service.models.records import ModelRecord, ModelRepo

__all__ = ["ModelRecord", "ModelRepo"]
