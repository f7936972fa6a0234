import sys

from idres.cli import main

sys.exit(main())
