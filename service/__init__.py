"""diggan-service: the REST face of gan_core (FastAPI), plus storage and job records."""
