"""``python -m poe``: the same as the installed ``poe`` command."""
import sys

from poe.cli.main import main

sys.exit(main())
