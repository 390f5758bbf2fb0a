"""The one compiled module, `pipelines.ingest.jats_c`: ingest's hot paths over libxml2's nodes.

Optional: without Cython, lxml's headers or a C compiler the build goes on and ingest runs the same
rules in Python (`pipelines.ingest.jats.COMPILED` says which one runs). Everything else is declared in
pyproject.toml.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NOT_BUILT = "warning: pipelines.ingest.jats_c not built ({}); ingest runs in Python"


class OptionalBuildExt(build_ext):
    """A failed compilation is a warning, and the module is left out of what the install copies.
    (setuptools' `Extension(optional=True)` lets a compiler that exits non-zero fail the install.)"""

    def build_extensions(self) -> None:
        built = []
        for ext in self.extensions:
            try:
                self.build_extension(ext)
                built.append(ext)
            except Exception as error:  # noqa: BLE001
                print(NOT_BUILT.format(error), file=sys.stderr)
        self.extensions = built


def extensions() -> list[Extension]:
    try:
        import lxml
        from Cython.Build import cythonize

        ingest = Extension(
            "pipelines.ingest.jats_c",
            ["pipelines/ingest/jats_c.pyx"],
            include_dirs=lxml.get_include(),  # lxml's C API and the libxml2 headers it was built with
        )
        return cythonize([ingest], quiet=True)
    except Exception as error:  # noqa: BLE001 - no Cython / lxml, or Cython cannot translate it
        print(NOT_BUILT.format(error), file=sys.stderr)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
