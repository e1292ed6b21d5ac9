"""``python -m labformer`` (and ``torchrun -m labformer``) = the ``labformer`` command."""

from labformer.cli import main

raise SystemExit(main())
