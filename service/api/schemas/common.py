from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorResponse(BaseModel):
    """Every error answer: `detail` says what is wrong and how to fix it."""

    detail: str
    errors: list[dict[str, Any]] | None = None  # per-field problems for validation errors


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503, 507)
}
