"""Spherical regression (Liao et al., CVPR 2019) in Keras 3: S_exp, S_flat and Direct
heads for targets on S^{d-1}, their losses, angular metrics and sign layouts (the
reusable core, imported here), and the tasks in ``spherical_regression.tasks``
(``tasks.viewpoint`` S^1, ``tasks.normals`` S^2, ``tasks.rotation`` S^3). ``experiment`` and
``dataset`` are the old names of ``tasks.rotation_model`` and ``tasks.rotation_data``: package
attributes (``from spherical_regression import dataset``) that import the task module on
first use, not modules of their own (:data:`_MOVED`).

The names below and the modules are attributes of the package, imported on first
use (PEP 562), so that ``import spherical_regression.tasks...`` for a command's
``--help`` does not load Keras. ``import spherical_regression`` makes the
package's Keras classes (heads, losses, metrics) loadable by
``keras.models.load_model``, as ``import spherical_cnn`` does (it registers the
classes of both packages when Keras is imported; ``spherical_cnn/_registration.py``).
"""
from __future__ import annotations

from spherical_cnn._lazy import lazy_attributes
from typing import TYPE_CHECKING

# spherical_cnn's import registers the Keras classes of both packages; one version for both.
from spherical_cnn import __version__

# submodules reachable as attributes (``spherical_regression.heads``)
_SUBMODULES = ("heads", "decoding", "losses", "metrics", "signs", "rotations", "render", "safe_pickle",
               "tasks", "dataset", "experiment")
# old submodule names -> the modules that replaced them (the same module objects)
_MOVED = {"dataset": "tasks.rotation_data", "experiment": "tasks.rotation_model"}

_EXPORTS = {
    "LOGIT_SCALES": "heads",
    "CategoryConditionedHead": "heads",
    "DirectHead": "heads",
    "SExpHead": "heads",
    "SFlatHead": "heads",
    "decode_output": "heads",
    "l2_normalize": "heads",
    "make_head": "heads",
    "sexp_abs": "heads",
    "sexp_decode": "heads",
    "sexp_encode": "heads",
    "AbsCosineProximityLoss": "losses",
    "DirectLoss": "losses",
    "SExpLoss": "losses",
    "SFlatLoss": "losses",
    "SignCrossEntropyLoss": "losses",
    "abs_cosine_proximity": "losses",
    "abs_log_likelihood": "losses",
    "cosine_proximity": "losses",
    "loss_for_head": "losses",
    "sign_cross_entropy": "losses",
    "smooth_l1": "losses",
    "check_targets": "losses",
    "THRESHOLDS": "metrics",
    "AngularAccuracy": "metrics",
    "MedianAngularError": "metrics",
    "accuracy_at": "metrics",
    "biternion_angle": "metrics",
    "geodesic_distance_matrices": "metrics",
    "geodesic_distance_quaternions": "metrics",
    "geodesic_distance_quaternions_ops": "metrics",
    "median_error_deg": "metrics",
    "paper_metrics": "metrics",
    "resolve_kind": "metrics",
    "summarize_errors": "metrics",
    "vector_angle": "metrics",
    "vector_angle_ops": "metrics",
    "axis_angle_to_matrix": "rotations",
    "axis_angle_to_quaternion": "rotations",
    "canonical": "rotations",
    "quaternion_multiply": "rotations",
    "quaternion_to_matrix": "rotations",
    "random_quaternions": "rotations",
    "SignLayout": "signs",
    "label_signs": "signs",
    "num_sign_classes": "signs",
    "sign_labels": "signs",
    "sign_table": "signs",
}

__all__ = [
    "SExpHead", "SFlatHead", "DirectHead", "CategoryConditionedHead", "make_head", "decode_output", "sexp_abs",
    "sexp_decode", "sexp_encode", "l2_normalize", "LOGIT_SCALES",
    "SExpLoss", "SFlatLoss", "DirectLoss", "AbsCosineProximityLoss", "SignCrossEntropyLoss",
    "loss_for_head", "cosine_proximity", "abs_cosine_proximity", "abs_log_likelihood",
    "sign_cross_entropy",
    "smooth_l1", "check_targets",
    "geodesic_distance_quaternions", "geodesic_distance_matrices",
    "geodesic_distance_quaternions_ops", "vector_angle", "vector_angle_ops", "biternion_angle",
    "median_error_deg", "accuracy_at", "summarize_errors", "THRESHOLDS",
    "MedianAngularError", "AngularAccuracy", "paper_metrics", "resolve_kind",
    "quaternion_to_matrix", "axis_angle_to_matrix", "axis_angle_to_quaternion",
    "quaternion_multiply", "canonical", "random_quaternions",
    "sign_labels", "label_signs", "sign_table", "num_sign_classes", "SignLayout",
    "heads", "losses", "metrics", "signs", "rotations", "tasks",
]


if TYPE_CHECKING:  # what editors and type checkers see; kept equal to _EXPORTS by a test
    from . import decoding, heads, losses, metrics, render, rotations, safe_pickle, signs, tasks
    from .tasks import rotation_data as dataset, rotation_model as experiment
    from .heads import (LOGIT_SCALES, CategoryConditionedHead, DirectHead, SExpHead, SFlatHead,
                        decode_output, l2_normalize, make_head, sexp_abs, sexp_decode,
                        sexp_encode)
    from .losses import (AbsCosineProximityLoss, DirectLoss, SExpLoss, SFlatLoss,
                         SignCrossEntropyLoss, abs_cosine_proximity, abs_log_likelihood,
                         check_targets, cosine_proximity, loss_for_head, sign_cross_entropy,
                         smooth_l1)
    from .metrics import (THRESHOLDS, AngularAccuracy, MedianAngularError, accuracy_at,
                          biternion_angle, geodesic_distance_matrices,
                          geodesic_distance_quaternions, geodesic_distance_quaternions_ops,
                          median_error_deg, paper_metrics, resolve_kind, summarize_errors, vector_angle,
                          vector_angle_ops)
    from .rotations import (axis_angle_to_matrix, axis_angle_to_quaternion, canonical,
                            quaternion_multiply, quaternion_to_matrix, random_quaternions)
    from .signs import SignLayout, label_signs, num_sign_classes, sign_labels, sign_table


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _SUBMODULES, globals(), moved=_MOVED)
