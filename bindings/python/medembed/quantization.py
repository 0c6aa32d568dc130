"""quantization.py - sentence-transformers' embedding quantization, in NumPy.

Mirrors ``sentence_transformers.quantization.quantize_embeddings`` (v3.x) operation for
operation, so that the same float32 embeddings give the same bytes:

* ``int8`` / ``uint8``: scalar quantization with per-dimension ranges: ``ranges`` (2, dim) if
  given, else min/max over ``calibration_embeddings``, else min/max over the embeddings being
  quantized. ``steps = (max - min) / 255``; uint8 is ``((x - min) / steps)`` cast to uint8,
  int8 is the same minus 128 cast to int8 (the cast truncates toward zero, as in ST).
* ``binary`` / ``ubinary``: ``np.packbits(x > 0)`` per row (ceil(dim/8) bytes, MSB first);
  binary is that minus 128 as int8.
* ``float32``: a float32 copy.

Unlike ST, inputs that would make the result meaningless raise ValueError with a reason
instead of silently producing NaN casts: a non-2-D array, ranges of the wrong shape. Values
outside the calibration range are clipped to the representable range (ST leaves this to the
float->int cast, which is undefined in C and platform-dependent in NumPy); inside the range
the results are identical.
"""
import numpy as np

PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


def quantize_embeddings(embeddings, precision, ranges=None, calibration_embeddings=None):
    """Quantize (n, dim) float embeddings to ``precision``; see the module docstring."""
    if precision not in PRECISIONS:
        raise ValueError("precision must be one of %s, got %r" % (", ".join(PRECISIONS),
                                                                  precision))
    emb = np.asarray(embeddings)
    if emb.dtype in (np.uint8, np.int8):
        raise ValueError("embeddings to quantize must be float, not %s" % emb.dtype)
    if emb.ndim != 2:
        raise ValueError("embeddings must be a 2-D (n, dim) array, got shape %s" % (emb.shape,))
    if precision == "float32":
        return emb.astype(np.float32)
    if precision.endswith("int8"):
        if ranges is None:
            src = emb if calibration_embeddings is None else np.asarray(calibration_embeddings)
            if src.ndim != 2 or src.shape[1] != emb.shape[1] or src.shape[0] == 0:
                raise ValueError("calibration embeddings must be a non-empty (n, %d) array, "
                                 "got shape %s" % (emb.shape[1], src.shape))
            ranges = np.vstack((np.min(src, axis=0), np.max(src, axis=0)))
        ranges = np.asarray(ranges)
        if ranges.shape != (2, emb.shape[1]):
            raise ValueError("ranges must have shape (2, %d), got %s"
                             % (emb.shape[1], ranges.shape))
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (emb - starts) / steps
            # A constant dimension (step 0) maps to bucket 0, like any value at the minimum.
            scaled = np.where(steps == 0, 0, scaled)
        if precision == "uint8":
            return np.clip(scaled, 0, 255).astype(np.uint8)
        return np.clip(scaled - 128, -128, 127).astype(np.int8)
    # Per row, so a dim that is not a multiple of 8 pads each row (ST packs the flattened
    # array, which is the same thing whenever dim % 8 == 0, as for every BERT size).
    bits = np.packbits(emb > 0, axis=-1)
    if precision == "binary":
        return (bits.astype(np.int16) - 128).astype(np.int8)
    return bits
