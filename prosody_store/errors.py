"""The base class of every exception prosody_store raises on purpose.

This module imports nothing, so that every other module can import it.
Each exception class keeps its other bases too (``ValueError``,
``OSError``), so ``except ValueError`` goes on working.
"""

__all__ = ["Error"]


class Error(Exception):
    """Base of all of prosody_store's own exceptions: ``except prosody_store.Error``."""
