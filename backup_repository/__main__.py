"""``python -m backup_repository`` is the same as the ``backup-repository`` command."""

import sys

from backup_repository.cli import main

if __name__ == "__main__":
    sys.exit(main())
