"""The shapes of the real MedEmbed models load and run: ../shared/tools/make_model.py writes
random-weight folders of the tiny, small (MedEmbed-small), base (MedEmbed-base) and large
(MedEmbed-large) presets, laid out as the hub ships them. Each must load, report its shape in
`medembed info`, and embed text to the independent float64 NumPy reference."""
import os
import subprocess

import numpy as np
import pytest

import numpy_ref
from conftest import need_shared

PRESETS = {"tiny": (2, 64, 4, 256), "small": (12, 384, 12, 1536), "base": (12, 768, 12, 3072)}
TEXTS = ["Does aspirin reduce the risk of recurrent ischemic stroke?",
         "Metformin is first-line therapy for type 2 diabetes mellitus.", ""]


@pytest.fixture(scope="module")
def make_model():
    return need_shared("tools", "make_model.py")


@pytest.mark.parametrize("preset,dtype", [("tiny", "bf16"), ("small", "f16"), ("base", "f32")])
def test_preset_loads_and_matches_reference(cli, make_model, tmp_path, preset, dtype):
    out = tmp_path / preset
    subprocess.run(["/usr/bin/python3", make_model, "--preset", preset, "--dtype", dtype,
                    "--std", "0.3", "--seed", "7", "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    layers, hidden, heads, ffn = PRESETS[preset]
    info = cli.info(str(out))
    assert (info["layers"], info["dim"], info["heads"], info["intermediate_size"]) == \
        (layers, hidden, heads, ffn)
    assert info["weight_dtype"] == dtype.upper()
    assert info["pooling"] == "cls" and info["normalize"] is True and info["max_length"] == 512
    ids = cli.tokenize(str(out), TEXTS)
    got = np.array([r["embedding"] for r in cli.embed(str(out), TEXTS)])
    ref = numpy_ref.load(str(out))
    want = np.array([numpy_ref.embed(ref, i) for i in ids])
    # 12 random layers with std 0.3 amplify fp32 rounding more than the 2-layer goldens do, so
    # the bound grows with depth; a wrong op (GELU, LayerNorm, a transposed weight) is off by
    # orders of magnitude more.
    tol = 1e-5 if layers <= 2 else 1e-4
    print("%s %s max |diff| %.2e" % (preset, dtype, np.abs(got - want).max()))
    assert np.abs(got - want).max() <= tol, np.abs(got - want).max()
