"""The one compiled module, `pipelines.ingest.jats_c`: ingest's hot paths over libxml2's nodes.

Optional: without Cython, lxml's headers or a C compiler the build goes on and ingest runs the same
rules in Python (`pipelines.ingest.jats.COMPILED` says which one runs). Everything else is declared in
pyproject.toml.
"""

import sys

from setuptools import Extension, setup


def extensions() -> list[Extension]:
    try:
        import lxml
        from Cython.Build import cythonize

        ingest = Extension(
            "pipelines.ingest.jats_c",
            ["pipelines/ingest/jats_c.pyx"],
            include_dirs=lxml.get_include(),  # lxml's C API and the libxml2 headers it was built with
            optional=True,  # a failed C compilation is a warning
        )
        return cythonize([ingest], quiet=True)
    except Exception as error:  # noqa: BLE001 - no Cython / lxml, or Cython cannot translate it
        print(f"warning: pipelines.ingest.jats_c not built ({error}); ingest runs in Python", file=sys.stderr)
        return []


setup(ext_modules=extensions())
