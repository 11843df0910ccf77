"""`python -m gan_core.metrics fid DIR_A DIR_B` / `metrics --ckpt ... --data ...`."""

import sys

from .cli import main

sys.exit(main())
