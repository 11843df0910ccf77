import sys

from diggan.cli import main

sys.exit(main())
