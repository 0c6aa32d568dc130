"""`pip install --no-build-isolation ./bindings/python` offline, into a fresh virtual
environment (Debian's python3-venv, with system site-packages for numpy): the installed
package carries its own copy of libmedembed.so and gives the same vectors as the source tree."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pkg_support as ps

medembed = ps.import_medembed()


def test_pip_install_offline(tmp_path):
    if subprocess.run([sys.executable, "-m", "venv", "--help"], capture_output=True).returncode:
        pytest.skip("python3-venv is not installed")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True, capture_output=True, timeout=120)
    py = str(venv / "bin" / "python")
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True).returncode:
        pytest.skip("the venv has no pip (install python3-pip)")
    env = dict(os.environ, MEDEMBED_LIB=ps.LIB, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        _pkg_copy(tmp_path)], capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout.decode()[-2000:] + r.stderr.decode()[-2000:]

    _check_installed(py, tmp_path, str(venv))


def _check_installed(py, tmp_path, venv):
    """The package installed into venv loads its own copy of the library and gives the
    source tree's vectors, bit for bit."""
    model_dir = ps.make_model(str(tmp_path / "m"))
    code = ("import medembed, numpy as np, sys\n"
            "print(medembed.__file__); print(medembed.lib_path())\n"
            "e = medembed.Model(sys.argv[1]).encode(['aspirin and stroke', 'statins'])\n"
            "np.save(sys.argv[2], e)\n")
    # this process's environment (a sanitizer build's library needs its runtime preloaded)
    env = {k: v for k, v in os.environ.items() if k not in ("MEDEMBED_LIB", "PYTHONPATH")}
    out = str(tmp_path / "e.npy")
    r = subprocess.run([py, "-c", code, model_dir, out], capture_output=True, env=env,
                       cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    pkg_file, lib_file = r.stdout.decode().split()
    pkg = os.path.dirname(pkg_file)
    assert pkg.startswith(venv) and lib_file == os.path.join(pkg, "libmedembed.so")
    want = medembed.Model(model_dir).encode(["aspirin and stroke", "statins"])
    assert np.array_equal(np.load(out), want)


def _fresh_venv(tmp_path, name, base=None):
    """A venv without system site-packages, from `base` (default this interpreter's base):
    what a user gets from `python3 -m venv`."""
    base = base or getattr(sys, "_base_executable", None) or sys.executable
    venv = tmp_path / name
    r = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, timeout=300)
    if r.returncode:
        pytest.skip("%s -m venv failed: %s" % (base, r.stderr.decode()[-300:]))
    return str(venv / "bin" / "python")


def _pkg_copy(tmp_path):
    """A copy of the package, so that the in-tree build leaves nothing in the repository."""
    src = tmp_path / "src"
    shutil.copytree(ps.PKG_DIR, str(src), ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "libmedembed.so"))
    return str(src)


def test_pip_install_plain_into_a_fresh_venv(tmp_path):
    """`pip install ./bindings/python` with PyPI reachable: build isolation brings a current
    setuptools, numpy comes from PyPI, and the package works."""
    from conftest import clean_env, peer_skip
    py = _fresh_venv(tmp_path, "venv")
    probe = subprocess.run([py, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                            "-q", "-d", str(tmp_path / "probe"), "--timeout", "30", "wheel"],
                           capture_output=True, timeout=300, env=clean_env())
    if probe.returncode:
        peer_skip("PyPI is unreachable: cannot check a plain `pip install` (%s)"
                  % probe.stderr.decode()[-200:])
    env = clean_env(MEDEMBED_LIB=ps.LIB, PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([py, "-m", "pip", "install", "-q", _pkg_copy(tmp_path)],
                       capture_output=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout.decode()[-2000:] + r.stderr.decode()[-2000:]
    _check_installed(py, tmp_path, str(tmp_path / "venv"))


def test_no_build_isolation_names_what_it_needs(tmp_path):
    """Offline, with a setuptools too old to make wheels and no `wheel` package (a fresh venv
    of Debian's python3: setuptools 66), the build stops with a message naming `wheel`
    instead of setuptools' "invalid command 'bdist_wheel'"."""
    from conftest import clean_env
    py = _fresh_venv(tmp_path, "venv", "/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                     else None)
    chk = subprocess.run([py, "-c", "import setuptools, importlib.util as u; import sys; "
                          "sys.exit(0 if u.find_spec('wheel') is None and "
                          "u.find_spec('setuptools.command.bdist_wheel') is None else 1)"],
                         capture_output=True, env=clean_env())
    if chk.returncode:
        pytest.skip("this venv's setuptools can build wheels by itself: nothing to name")
    env = clean_env(MEDEMBED_LIB=ps.LIB, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        _pkg_copy(tmp_path)], capture_output=True, env=env, timeout=300)
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode != 0
    assert "needs the `wheel` package, or setuptools >= 70.1" in out, out[-2000:]
    assert "invalid command 'bdist_wheel'" not in out
