"""``python -m pofa_openvino VERB ...``: the console script without the script (e.g. on an edge box,
``python -m pofa_openvino predict BUNDLE TEXT...`` with the base install alone)."""

import sys

from .cli import main

sys.exit(main())
