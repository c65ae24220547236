"""Build script: compiles the Cython extensions of cryptofeed_types (and bus._zmqio).

Everything else about the distribution lives in pyproject.toml; setup.py exists
only because extension modules still need it.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["symbols", "events", "book", "timestamps"]

extensions = [
    Extension(f"cryptofeed_types.{name}", [f"cryptofeed_types/{name}.pyx"]) for name in MODULES
]
# The bus's direct libzmq calls (resolved at import from pyzmq's own libzmq: nothing to link).
extensions.append(Extension("bus._zmqio", ["bus/_zmqio.pyx"]))

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"embedsignature": True},
    )
)
