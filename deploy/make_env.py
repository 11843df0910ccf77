"""Write a `.env` for docker-compose.yml with fresh random secrets and an initial API key.

    python3 deploy/make_env.py [--tenant admin] > .env      (`make compose-env` does this, mode 0600)

Only the standard library: it runs before anything is installed. The API key itself is printed once, to
stderr; .env keeps only its SHA-256 (DIGGAN_API_KEYS), as the service does for every key.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenant", default="admin", help="tenant of the initial API key")
    args = p.parse_args()
    key = f"dgk-{secrets.token_urlsafe(32)}"
    values = {
        "DIGGAN_DB_PASSWORD": secrets.token_hex(24),  # hex: safe inside the database URL as it is
        "DIGGAN_S3_ROOT_USER": "diggan-root",
        "DIGGAN_S3_ROOT_PASSWORD": secrets.token_hex(24),
        "DIGGAN_S3_ACCESS_KEY": "diggan-app",
        "DIGGAN_S3_SECRET_KEY": secrets.token_hex(24),
        "DIGGAN_API_KEYS": f'["{args.tenant}:{hashlib.sha256(key.encode()).hexdigest()}"]',
    }
    print("# Written by deploy/make_env.py: keep this file private (it holds every secret of the deployment).")
    for name, value in values.items():
        print(f"{name}='{value}'")
    print(f"initial API key for tenant {args.tenant!r} (shown only this once; .env keeps its SHA-256):\n{key}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
