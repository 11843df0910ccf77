"""Celery worker: adapts gan_core's trainer to jobs stored by the service."""
