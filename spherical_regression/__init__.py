"""Spherical regression (Liao et al., CVPR 2019) in Keras 3: S_exp, S_flat and Direct
heads for targets on S^{d-1}, their losses, angular metrics and sign layouts (the
reusable core, imported here), and the tasks in ``spherical_regression.tasks``
(``tasks.rotation``: S^3 pose from images; imported on use). ``experiment`` and
``dataset`` are the old names of ``tasks.rotation`` and ``tasks.rotation_data``."""
from .heads import (LOGIT_SCALES, DirectHead, SExpHead, SFlatHead, decode_output, l2_normalize,
                    make_head, sexp_abs, sexp_decode, sexp_encode)
from .losses import (AbsCosineProximityLoss, DirectLoss, SExpLoss, SFlatLoss,
                     SignCrossEntropyLoss, abs_cosine_proximity, abs_log_likelihood,
                     cosine_proximity,
                     loss_for_head, sign_cross_entropy, smooth_l1)
from .metrics import (THRESHOLDS, AngularAccuracy, MedianAngularError, accuracy_at,
                      biternion_angle, geodesic_distance_matrices,
                      geodesic_distance_quaternions, geodesic_distance_quaternions_ops,
                      median_error_deg, paper_metrics, summarize_errors, vector_angle,
                      vector_angle_ops)
from .rotations import (axis_angle_to_matrix, axis_angle_to_quaternion, canonical,
                        quaternion_multiply, quaternion_to_matrix, random_quaternions)
from .signs import SignLayout, label_signs, num_sign_classes, sign_labels, sign_table

__all__ = [
    "SExpHead", "SFlatHead", "DirectHead", "make_head", "decode_output", "sexp_abs",
    "sexp_decode", "sexp_encode", "l2_normalize", "LOGIT_SCALES",
    "SExpLoss", "SFlatLoss", "DirectLoss", "AbsCosineProximityLoss", "SignCrossEntropyLoss",
    "loss_for_head", "cosine_proximity", "abs_cosine_proximity", "abs_log_likelihood",
    "sign_cross_entropy",
    "smooth_l1",
    "geodesic_distance_quaternions", "geodesic_distance_matrices",
    "geodesic_distance_quaternions_ops", "vector_angle", "vector_angle_ops", "biternion_angle",
    "median_error_deg", "accuracy_at", "summarize_errors", "THRESHOLDS",
    "MedianAngularError", "AngularAccuracy", "paper_metrics",
    "quaternion_to_matrix", "axis_angle_to_matrix", "axis_angle_to_quaternion",
    "quaternion_multiply", "canonical", "random_quaternions",
    "sign_labels", "label_signs", "sign_table", "num_sign_classes", "SignLayout",
]
