"""Cursor pagination shared by every list route: one query contract and one error message for a bad cursor."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Query

from service.core.ids import is_valid_id

PageLimit = Annotated[int, Query(ge=1, le=100, description="at most this many items (1-100)")]
PageCursor = Annotated[str | None, Query(max_length=64, description="`next_cursor` of the previous page")]


def check_cursor(cursor: str | None, id_prefix: str) -> None:
    """A cursor is the id of the last item of the previous page; anything else is a 422 that says so."""
    if cursor is not None and not is_valid_id(cursor, id_prefix):
        raise HTTPException(422, f"invalid cursor {cursor!r}; pass the `next_cursor` of a previous page")


def page_fields(next_cursor: str | None) -> dict[str, Any]:
    """The fields every *List response shares besides `data`."""
    return {"next_cursor": next_cursor, "has_more": next_cursor is not None}
