"""Job records: the durable state of a training job, shared by the API and the worker."""

from .records import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    CheckpointInfo,
    JobRecord,
    JobRepo,
    JobStatus,
    Progress,
)

__all__ = [
    "ACTIVE_STATES",
    "TERMINAL_STATES",
    "CheckpointInfo",
    "JobRecord",
    "JobRepo",
    "JobStatus",
    "Progress",
]
