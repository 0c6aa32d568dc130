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
    # copy the package so the in-tree build leaves nothing in the repository
    src = tmp_path / "src"
    shutil.copytree(ps.PKG_DIR, str(src), ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "libmedembed.so"))
    env = dict(os.environ, MEDEMBED_LIB=ps.LIB, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        str(src)], capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout.decode()[-2000:] + r.stderr.decode()[-2000:]

    model_dir = ps.make_model(str(tmp_path / "m"))
    code = ("import medembed, numpy as np, sys\n"
            "print(medembed.__file__); print(medembed.lib_path())\n"
            "e = medembed.Model(sys.argv[1]).encode(['aspirin and stroke', 'statins'])\n"
            "np.save(sys.argv[2], e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("MEDEMBED_LIB", "PYTHONPATH")}
    out = str(tmp_path / "e.npy")
    r = subprocess.run([py, "-c", code, model_dir, out], capture_output=True, env=env,
                       cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    pkg_file, lib_file = r.stdout.decode().split()
    pkg = os.path.dirname(pkg_file)
    assert pkg.startswith(str(venv)) and lib_file == os.path.join(pkg, "libmedembed.so")
    want = medembed.Model(model_dir).encode(["aspirin and stroke", "statins"])
    assert np.array_equal(np.load(out), want)
