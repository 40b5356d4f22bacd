"""Decoding of the heads' outputs to unit vectors, and the S_exp logit convention.

The functions the heads (``heads.py``) and the metrics (``metrics.py``) share; kept
apart from the Keras layers so that the metrics need not import the heads (which
import the metrics for ``make_metrics``). Layouts and conventions: ``heads.py``.
All functions keep the dtype of their input (float16, float32, float64).
"""
from __future__ import annotations

from keras import ops

from . import signs as signs_lib
from .signs import SignLayoutLike
from spherical_cnn._types import Tensor

__all__ = ["HEAD_NAMES", "LOGIT_SCALES", "sexp_abs", "l2_normalize", "sexp_decode",
           "decode_output"]

HEAD_NAMES = ("sexp", "sflat", "direct")
_EPS = 1e-12
LOGIT_SCALES = {"paper": 2.0, "original_code": 1.0}


def _logit_factor(logit_scale):
    if logit_scale not in LOGIT_SCALES:
        raise ValueError(f"unknown logit_scale {logit_scale!r}: expected one of "
                         f"{sorted(LOGIT_SCALES)}")
    return LOGIT_SCALES[logit_scale]


def sexp_abs(logits: Tensor, logit_scale: str = "paper") -> Tensor:
    """|y| = sqrt(softmax(s o)), s = 2 for 'paper' (= exp(o_i) / sqrt(sum_j exp(2 o_j)))
    or 1 for 'original_code'; computed in log space (s o_i - logsumexp(s o)) / 2 so that
    neither overflow nor sqrt(0) occurs."""
    s = _logit_factor(logit_scale)
    scaled = logits * ops.cast(s, logits.dtype) if s != 1.0 else logits
    log_abs = 0.5 * (scaled - ops.logsumexp(scaled, axis=-1, keepdims=True))
    return ops.exp(log_abs)


def l2_normalize(x: Tensor, axis: int = -1) -> Tensor:
    """x / ||x|| with the squared norm floored at 1e-12 (as tf.math.l2_normalize)."""
    sq = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(sq, ops.cast(_EPS, sq.dtype)))


def sexp_decode(output: Tensor, dim: int, sign_layout: SignLayoutLike = None) -> Tensor:
    """Unit vectors ``(batch, dim)`` from a packed S_exp output ``(batch, dim + K)``:
    |y| * signs[argmax(sign logits)], in the output's dtype. Without ``sign_layout`` the
    default layout is read from the width (2^dim or 2^(dim-1) classes)."""
    width = output.shape[-1]
    if width is None or width <= dim:
        raise ValueError(f"S_exp output of width {width} cannot hold dim={dim} absolute "
                         "values plus sign logits")
    layout = signs_lib.layout_for_output(dim, width - dim, sign_layout)
    abs_y = output[..., :dim]
    label = ops.argmax(output[..., dim:], axis=-1)
    return abs_y * layout.signs_ops(label, dtype=output.dtype)


def decode_output(head: str, output: Tensor, dim: int,
                  sign_layout: SignLayoutLike = None) -> Tensor:
    """Unit vectors from the output of a head named ``head`` ('sexp'|'sflat'|'direct');
    ``sign_layout`` only matters for 'sexp'."""
    if head == "sexp":
        return sexp_decode(output, dim, sign_layout)
    if head in ("sflat", "direct"):
        return l2_normalize(output)
    raise ValueError(f"unknown head {head!r}: expected 'sexp', 'sflat' or 'direct'")
