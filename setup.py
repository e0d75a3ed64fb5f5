"""Build the optional C speedups; everything else is declared in setup.cfg.

Both extensions are ``optional``: where no C compiler or Python headers are
found the build goes on without them and the pure-Python reader and writer,
which stay the reference, are used.  ``PROSODY_STORE_PURE_BUILD=1`` skips them
on purpose; ``PROSODY_STORE_PURE=1`` at run time ignores them once built.
"""
import os

from setuptools import Extension, setup

EXTENSIONS = [
    Extension("prosody_store._creader", ["prosody_store/_creader.c"], optional=True),
    Extension("prosody_store._cwriter", ["prosody_store/_cwriter.c"], optional=True),
]


def wanted() -> list:
    if os.environ.get("PROSODY_STORE_PURE_BUILD", "") not in ("", "0"):
        return []
    return [ext for ext in EXTENSIONS if os.path.exists(ext.sources[0])]


setup(ext_modules=wanted())
