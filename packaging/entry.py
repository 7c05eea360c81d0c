"""Entry point of the frozen executable: the same as ``python -m backup_repository``."""

import sys

from backup_repository.cli import main

if __name__ == "__main__":
    sys.exit(main())
