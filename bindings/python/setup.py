"""setup.py - copies libmedembed.so into the package at build time.

The library comes from, first hit wins: $MEDEMBED_LIB; ../../build/libmedembed.so of the
source tree (built with `make lib` if missing). Everything else is in pyproject.toml.
"""
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def find_library():
    env = os.environ.get("MEDEMBED_LIB")
    if env:
        if not os.path.isfile(env):
            sys.exit("setup.py: MEDEMBED_LIB=%s: no such file" % env)
        return env
    so = os.path.join(REPO, "build", "libmedembed.so")
    if not os.path.isfile(so) and os.path.isfile(os.path.join(REPO, "Makefile")):
        print("setup.py: building libmedembed with `make lib` in %s" % REPO)
        subprocess.run(["make", "-C", REPO, "-j2", "lib"], check=False)
    if os.path.isfile(so):
        return so
    sys.exit("setup.py: libmedembed.so not found: run `make` in the repository root, or set "
             "MEDEMBED_LIB=/path/to/libmedembed.so")


class BuildPyWithLib(build_py):
    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "medembed", "libmedembed.so")
        src = find_library()
        print("setup.py: shipping %s" % src)
        shutil.copyfile(src, dest)


class BinaryDistribution(Distribution):
    """The wheel carries a native library, so it is platform-specific."""

    def has_ext_modules(self):
        return True


def check_wheel_support():
    """Without build isolation pip builds with this Python's own setuptools, which makes
    wheels only from 70.1 on, or with the `wheel` package. Say so, instead of setuptools'
    "invalid command 'bdist_wheel'"."""
    if not {"bdist_wheel", "dist_info", "editable_wheel"} & set(sys.argv[1:]):
        return
    try:
        import setuptools.command.bdist_wheel  # noqa: F401  (setuptools >= 70.1)
        return
    except ImportError:
        pass
    try:
        import wheel.bdist_wheel  # noqa: F401
    except ImportError:
        import setuptools
        sys.exit("setup.py: building the medembed wheel needs the `wheel` package, or setuptools "
                 ">= 70.1, in %s (it has setuptools %s and no wheel). Install one of them "
                 "(`%s -m pip install wheel`; offline, Debian's python3-wheel for /usr/bin/python3)"
                 ", or, where PyPI is reachable, run pip without --no-build-isolation."
                 % (sys.executable, setuptools.__version__, sys.executable))


check_wheel_support()
setup(cmdclass={"build_py": BuildPyWithLib}, distclass=BinaryDistribution)
