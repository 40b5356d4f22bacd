"""Spherical CNNs (Esteves et al., ECCV 2018) in TensorFlow 2 / Keras 3.

``import spherical_cnn`` is light (no TensorFlow) and makes the Keras classes of
this package and of ``spherical_regression`` loadable: they are registered as
soon as Keras is imported, so that ``keras.models.load_model("LOGDIR/model.keras")``
works in a fresh process after ``import spherical_cnn`` (see ``_registration.py``).

The public names (``__all__``) and the modules are attributes of the package,
imported on first use (PEP 562)::

    import spherical_cnn as scnn
    conv = scnn.SphConv(16)          # imports spherical_cnn.layers (and Keras) here
    scnn.sht.get_transform(32)       # the module, the same way

Modules: ``layers`` (spherical convolution, pooling, nonlinearity), ``models``
(the demo's networks), ``sht`` (the transform in ``keras.ops``), ``spherical``
(the same in NumPy, reference), ``losses``, ``optimizers``, ``datasets`` and
``data`` (records, mesh -> dataset tools), ``training`` (the demo's trainer),
``errors``, ``params`` (the training flags), ``ensemble`` (one model averaging the
probabilities of several trained ones), ``layouts`` (array layouts and
conversions to other libraries; docs/layouts.md), ``rotation`` (``rotate``:
differentiable rotation of maps); ``studies`` (rotation study,
equivariance, retrieval) and ``cli`` (the command-line programs) build on them.
"""
from __future__ import annotations

from ._lazy import lazy_attributes
from typing import TYPE_CHECKING

from ._registration import register_keras_classes as _register_keras_classes

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "SphConv": "layers",
    "SphericalActivation": "layers",
    "DegreePowerPooling": "layers",
    "AreaWeightedPooling": "layers",
    "CenteredAreaWeightedPooling": "layers",
    "SphericalAreaWeighting": "layers",
    "FusedBatchNormalization": "layers",
    "pointwise_nonlinearity": "layers",
    "ChannelSlice": "models",
    "MODELS": "models",
    "build_model": "models",
    "SphericalHarmonicTransform": "sht",
    "get_transform": "sht",
    "TF1Adam": "optimizers",
    "TF1Momentum": "optimizers",
    "make_optimizer": "optimizers",
    "UserError": "errors",
    "DataError": "errors",
    "rotate": "rotation",
    "rotate_coefficients": "rotation",
    "to_pyshtools": "layouts",
    "from_pyshtools": "layouts",
    "to_polar_first": "layouts",
    "from_polar_first": "layouts",
    "complex_to_channels": "layouts",
    "MeanProbabilityLogits": "ensemble",
    "ensemble_model": "ensemble",
}
# submodules reachable as attributes (``spherical_cnn.layers``)
_SUBMODULES = ("layers", "models", "sht", "sht_tables", "spherical", "losses", "optimizers",
               "datasets", "data", "training", "checkpoints", "summaries", "errors", "params",
               "util", "runlock", "studies", "cli", "layouts", "rotation", "trained_run",
               "pretrained", "sizes", "ensemble")

__all__ = [
    "SphConv", "SphericalActivation", "DegreePowerPooling", "AreaWeightedPooling",
    "CenteredAreaWeightedPooling", "SphericalAreaWeighting", "FusedBatchNormalization",
    "pointwise_nonlinearity", "ChannelSlice", "MODELS", "build_model",
    "SphericalHarmonicTransform", "get_transform", "TF1Adam", "TF1Momentum", "make_optimizer",
    "UserError", "DataError", "rotate", "rotate_coefficients", "to_pyshtools", "from_pyshtools",
    "to_polar_first", "from_polar_first", "complex_to_channels", "MeanProbabilityLogits", "ensemble_model",
    "layers", "ensemble", "layouts", "rotation", "models", "sht", "spherical", "losses", "optimizers", "datasets", "data",
    "training", "errors",
]

if TYPE_CHECKING:  # what editors and type checkers see; kept equal to _EXPORTS by a test
    from . import (checkpoints, cli, data, datasets, ensemble, errors, layers, layouts, losses, models,
                   optimizers, params, pretrained, rotation, runlock, sht, sht_tables, sizes,
                   spherical, studies, summaries, trained_run, training, util)
    from .layouts import (complex_to_channels, from_polar_first, from_pyshtools, to_polar_first,
                          to_pyshtools)
    from .rotation import rotate, rotate_coefficients
    from .errors import DataError, UserError
    from .ensemble import MeanProbabilityLogits, ensemble_model
    from .layers import (AreaWeightedPooling, CenteredAreaWeightedPooling, DegreePowerPooling,
                         FusedBatchNormalization, SphConv, SphericalActivation,
                         SphericalAreaWeighting, pointwise_nonlinearity)
    from .models import MODELS, ChannelSlice, build_model
    from .optimizers import TF1Adam, TF1Momentum, make_optimizer
    from .sht import SphericalHarmonicTransform, get_transform


__getattr__, __dir__ = lazy_attributes(__name__, _EXPORTS, _SUBMODULES, globals())


_register_keras_classes()
