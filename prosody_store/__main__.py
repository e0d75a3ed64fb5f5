import sys

from prosody_store.cli import main

sys.exit(main())
