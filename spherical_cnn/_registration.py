"""Register the package's Keras classes as soon as Keras is imported.

``keras.models.load_model`` finds custom layers only through Keras' registry,
which is filled when the modules that define them are imported. ``import
spherical_cnn`` must therefore make ``load_model`` work, yet must not import
Keras (and TensorFlow, 3-6 s) itself: the command-line programs live in this
package and answer ``--help`` without TensorFlow.

So importing the package only arranges the registration: if Keras is already
imported, the layer modules are imported at once; otherwise a finder on
``sys.meta_path`` waits for the import of ``keras`` and imports them right
after Keras itself has been executed, then removes itself. Either way, by the
time user code can call ``keras.models.load_model`` the classes are
registered.

The two packages ship together and either one's import registers the classes
of both (``spherical_regression`` imports ``spherical_cnn``): a model with
spherical layers and an S_exp head loads after ``import spherical_cnn`` or
``import spherical_regression``, in any order.
"""
import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# Modules whose import registers Keras classes (models imports layers), in both packages.
KERAS_MODULES = ("spherical_cnn.models", "spherical_cnn.optimizers", "spherical_cnn.ensemble",
                 "spherical_regression.heads", "spherical_regression.losses",
                 "spherical_regression.metrics")


def _import_keras_modules():
    for name in KERAS_MODULES:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - never break the user's `import keras`
            warnings.warn("spherical_cnn: could not register the Keras classes of {} ({}: {}); "
                          "import it before keras.models.load_model".format(
                              name, type(err).__name__, err))


class _Loader(importlib.abc.Loader):
    """Runs Keras' own loader, then imports the modules that register our classes."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        uninstall()
        self._loader.exec_module(module)
        _import_keras_modules()


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds ``keras`` with the regular finders and wraps its loader.

    ``importlib.util.find_spec("keras")`` (TensorFlow calls it) also comes here
    without importing anything, so the finder stays until the loader runs.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


_HOOK = _KerasImportHook()


def uninstall():
    """Remove the finder from ``sys.meta_path`` (when Keras is being loaded)."""
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def register_keras_classes():
    """Register the classes now if Keras is loaded, else right after ``import keras``."""
    keras = sys.modules.get("keras")
    if keras is not None and not getattr(getattr(keras, "__spec__", None), "_initializing", False):
        _import_keras_modules()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
