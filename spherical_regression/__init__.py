"""Spherical regression (Liao et al., CVPR 2019) in Keras 3: S_exp, S_flat and Direct
heads for targets on S^{d-1}, their losses, angular metrics and sign layouts (the
reusable core, imported here), and the tasks in ``spherical_regression.tasks``
(``tasks.viewpoint`` S^1, ``tasks.normals`` S^2, ``tasks.rotation`` S^3). ``experiment`` and
``dataset`` are the old names of ``tasks.rotation_model`` and ``tasks.rotation_data``.

The names below are imported on first use (PEP 562), so that ``import
spherical_regression.tasks...`` for a command's ``--help`` does not load Keras.
"""
import importlib

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
]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
