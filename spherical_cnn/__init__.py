"""Spherical CNNs (Esteves et al., ECCV 2018) in TensorFlow 2 / Keras 3.

``import spherical_cnn`` is light (no TensorFlow) and makes the package's
Keras layers loadable: they are registered as soon as Keras is imported, so
that ``keras.models.load_model("LOGDIR/model.keras")`` works in a fresh
process after ``import spherical_cnn`` (see ``_registration.py``).

Modules: ``models`` and ``layers`` (the networks), ``sht`` / ``spherical``
(transforms), ``layouts`` (array layouts and conversions to other libraries;
docs/layouts.md), ``rotate`` (differentiable rotation of maps), ``training`` (the demo's trainer), ``datasets``, ``data`` (mesh
-> dataset tools), ``cli`` (the command-line programs), ``errors``.
"""
from ._registration import register_keras_classes as _register_keras_classes

__version__ = "0.1.0"

_register_keras_classes()
