"""The models of the rotation study (:data:`MODEL_TABLE`) and which of them this version can run.

Part of the rotation study (:mod:`spherical_cnn.studies.rotation_study`, which re-exports
every name here).
"""
import dataclasses
import inspect

from .rotation_config import DATA_VARIANTS
from ..errors import UserError


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    """One model of the study.

    Attributes:
        name: key in the results and on the command line (``--models``).
        label: its row name in the tables.
        flags: training flag values set over the params files (``{dest: value}``,
            e.g. ``{'pool': 'cwap'}`` for ``--pool cwap``).
        data: dataset variant (key of :data:`DATA_VARIANTS`).
        kind: ``'spherical'`` (the params files' model) or ``'planar'`` (:func:`planar_cnn`).
        default: in the study's default list of models (``--models`` not given).
    """
    name: str
    label: str
    flags: dict
    data: str = "plain"
    kind: str = "spherical"
    default: bool = True



# Every spherical variant states the flags it differs in, so that a change of the params
# files' defaults (model-32.txt turns on spectral pooling and the anti-aliased nonlinearity)
# does not change what a variant is.
_CWAP = {"spectral_pool": False, "pool": "cwap", "nonlinearity_upsample": 1}
_SPECTRAL = {"spectral_pool": True, "pool": "wap", "nonlinearity_upsample": 1}
_AA = {"nonlinearity_upsample": 2}
MODEL_TABLE = (
    ModelVariant("spherical-wap", "spherical CNN, wap pooling",
                 {"spectral_pool": False, "pool": "wap", "nonlinearity_upsample": 1}),
    ModelVariant("spherical-cwap", "spherical CNN, cwap pooling", _CWAP),
    ModelVariant("spherical-spectral", "spherical CNN, spectral pooling", _SPECTRAL),
    ModelVariant("planar", "planar CNN", {}, kind="planar"),
    ModelVariant("spherical-cwap-aa", "spherical CNN, cwap, anti-aliased nonlinearity", {**_CWAP, **_AA}),
    ModelVariant("spherical-spectral-aa", "spherical CNN, spectral, anti-aliased nonlinearity",
                 {**_SPECTRAL, **_AA}),
    ModelVariant("spherical-cwap-ss", "spherical CNN, cwap, supersampled data", _CWAP, data="ss4"),
    ModelVariant("spherical-cwap-ss-aa", "spherical CNN, cwap, supersampled data, anti-aliased",
                 {**_CWAP, **_AA}, data="ss4"),
    # the model of the params files as they are (e.g. a real-data recipe such as
    # params/recipe-fmnist-32.txt); only when asked for, it repeats a variant above otherwise
    ModelVariant("spherical", "spherical CNN, the params files' model", {}, default=False),
)
MODELS = {v.name: v for v in MODEL_TABLE}
MODEL_NAMES = tuple(MODELS)
# equivariance.py's weight sources -> the study's model trained on z
EQUIVARIANCE_SOURCES = {"wap": "spherical-wap", "cwap": "spherical-cwap", "spectral": "spherical-spectral",
                        "cwap_aa": "spherical-cwap-aa", "spectral_aa": "spherical-spectral-aa"}


def canonical_name(name):
    """Model name as in :data:`MODEL_TABLE`: ``spherical_cwap_aa`` -> ``spherical-cwap-aa``."""
    return name.replace("_", "-")


def known_training_flags():
    """Names (argparse ``dest``) of the flags of ``spherical_cnn.params``."""
    from .. import params
    return {a.dest for a in params.build_parser()._actions}


def builder_options():
    """Keyword arguments that ``spherical_cnn.data.builder`` takes (its build functions)."""
    from ..data import builder
    names = set()
    for fn in (builder.build, builder._build_in, builder.build_synthetic, builder.build_from_tree):
        names.update(p.name for p in inspect.signature(fn).parameters.values()
                     if p.kind is not inspect.Parameter.VAR_KEYWORD)
    return names


def missing_requirements(variant, flags=None, options=None):
    """What ``variant`` needs and this version lacks: a list of texts (empty: runnable).

    ``flags`` and ``options`` default to :func:`known_training_flags` and :func:`builder_options`.
    """
    flags = known_training_flags() if flags is None else flags
    missing = ["training flag --{}".format(k) for k in variant.flags if k not in flags]
    if variant.data not in DATA_VARIANTS:
        return missing + ["dataset variant {!r}".format(variant.data)]
    options = builder_options() if options is None and DATA_VARIANTS[variant.data] else options
    missing += ["dataset builder option {}".format(k) for k in DATA_VARIANTS[variant.data]
                if k not in options]
    return missing


def select_models(requested, flags=None, options=None, table=None):
    """The variants to run and the ones left out.

    Args:
        requested: model names (``_`` or ``-``), or None for every variant of
            :data:`MODEL_TABLE` that this version supports.
        table: ``{name: ModelVariant}`` the names are looked up in (default :data:`MODELS`).

    Returns:
        ``(variants, skipped)``: list of :class:`ModelVariant`, ``{name: reason}``.

    Raises:
        ValueError: an unknown name. UserError: a requested variant this version cannot run.
    """
    if requested is None:
        variants, skipped = [], {}
        for v in (v for v in MODEL_TABLE if v.default):
            missing = missing_requirements(v, flags, options)
            if missing:
                skipped[v.name] = "needs " + ", ".join(missing) + ", which this version lacks"
            else:
                variants.append(v)
        return variants, skipped
    models = MODELS if table is None else table
    names = [canonical_name(n) for n in requested]
    unknown = [n for n in names if n not in models]
    if unknown:
        raise ValueError("unknown model(s) {}; expected some of {}".format(
            ", ".join(unknown), ", ".join(MODEL_NAMES)))
    if not names:
        raise ValueError("no model to run")
    for n in names:
        missing = missing_requirements(models[n], flags, options)
        if missing:
            raise UserError("model {} needs {}, which this version lacks".format(n, ", ".join(missing)))
    return [models[n] for n in dict.fromkeys(names)], {}
