"""Pydantic v2 request/response models of the REST API."""
