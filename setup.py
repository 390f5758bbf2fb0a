"""The one compiled module, `pipelines.ingest.jats_c` (the paragraph walk over libxml2's nodes).

Optional: without Cython or a C compiler the build goes on and ingest uses the same walk in Python
(`jats.COMPILED_WALK` says which one runs). Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup


def extensions() -> list[Extension]:
    try:
        import lxml
        from Cython.Build import cythonize
    except ImportError:
        return []
    ingest = Extension(
        "pipelines.ingest.jats_c",
        ["pipelines/ingest/jats_c.pyx"],
        include_dirs=lxml.get_include(),  # lxml's C API and the libxml2 headers it was built with
        optional=True,
    )
    return cythonize([ingest], quiet=True)


setup(ext_modules=extensions())
