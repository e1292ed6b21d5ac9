"""The checker's child process: ``python -m labformer.exercises FILE KEYS RESULT_FD MEMORY_MB`` (see sandbox)."""

import sys

from labformer.exercises.sandbox import child

child(sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]))
