"""`python -m llm_energy_widget` is the `llm-energy` command."""

import sys

from .cli import main

__all__: list[str] = []

sys.exit(main())
