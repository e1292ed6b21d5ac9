"""The lab's exercises and their checker: ``check(piece)`` in a notebook, ``labformer check FILE`` for a file.

See :mod:`labformer.exercises.catalogue` for the exercises and their mistakes.
"""

from labformer.exercises.checker import check, check_file

__all__ = ["check", "check_file"]
