"""Errors shared by the model importers and the sandbox. torch-free, so the API process can
catch them without importing torch (gan_core.training.transfer re-exports PretrainedError)."""

from __future__ import annotations


class PretrainedError(ValueError):
    """A pretrained source that cannot start this run; the message says what to change."""


def not_a_model_message(label: str) -> str:
    return (f"{label} is neither one of our .pt checkpoints (a zip) nor an NVlabs .pkl (a pickle); upload a "
            "checkpoint downloaded from a job or a stylegan2-ada-pytorch network pickle")
