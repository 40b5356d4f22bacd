"""The packages as a library: public names, version, py.typed, and saved models that load.

Issue 20, findings 1 and 10: a model saved with ``SExpHead``/``SExpLoss`` did not
load after ``import spherical_cnn, spherical_regression`` (Keras could not locate
the class: the regression package registered nothing); ``dir(spherical_cnn)`` was
empty, ``spherical_cnn.layers`` an AttributeError until Keras was imported, and
there was no ``__all__``, ``py.typed`` or ``spherical_regression.__version__``.

The Keras classes each package defines are read from the source (``ast``: every
class decorated with ``register_keras_serializable``), not from the registry the
code under test fills.
"""
import ast
import importlib
import inspect
import os
import subprocess
import sys
import tomllib

import numpy as np
import pytest

import spherical_cnn
import spherical_regression

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = {"spherical_cnn": spherical_cnn, "spherical_regression": spherical_regression}


def run_python(code, cwd, backend="jax"):
    """``python -c code`` in a fresh process (JAX backend: the registry does not depend on it
    and JAX imports faster than TensorFlow)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=ROOT, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(cwd), timeout=300)


def package_sources():
    """(package, dotted module name, parsed source) of every module of both packages."""
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                with open(path) as f:
                    tree = ast.parse(f.read())
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                yield package, module, tree


def registered_classes():
    """{"package>Class"} of every class decorated with register_keras_serializable."""
    found = set()
    for package, module, tree in package_sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == \
                        "register_keras_serializable":
                    kw = {k.arg: k.value for k in dec.keywords}
                    assert "package" in kw, (module, node.name)
                    pkg = kw["package"]
                    pkg = pkg.value if isinstance(pkg, ast.Constant) else package
                    found.add(f"{pkg}>{node.name}")
    return found


def test_the_source_scan_finds_the_classes_of_both_packages():
    found = registered_classes()
    assert {"spherical_cnn>SphConv", "spherical_cnn>TF1Adam", "spherical_cnn>ChannelSlice",
            "spherical_regression>SExpHead", "spherical_regression>SExpLoss",
            "spherical_regression>MedianAngularError"} <= found
    assert len(found) >= 20, sorted(found)


# ------------------------------------------------------------------- finding 1: saved models load
SAVE = """
import numpy as np, keras, spherical_regression as sr, spherical_cnn as scnn
keras.utils.set_random_seed(0)
x = keras.Input((8, 8, 2))
h = scnn.SphConv(4, n_filter_params=0)(x)
h = scnn.SphericalActivation("relu")(h)
h = scnn.AreaWeightedPooling()(h)
h = scnn.DegreePowerPooling()(h)
y = sr.SExpHead(3, sign_layout="normal_yzx")(h)
model = keras.Model(x, y)
model.compile(optimizer=scnn.TF1Adam(1e-3), loss=sr.SExpLoss(sign_layout="normal_yzx"),
              metrics=[sr.MedianAngularError(kind="vector", sign_layout="normal_yzx")])
xs = np.random.default_rng(0).standard_normal((4, 8, 8, 2)).astype("float32")
ys = np.random.default_rng(1).standard_normal((4, 3)).astype("float32")
ys /= np.linalg.norm(ys, axis=1, keepdims=True)
model.fit(xs, ys, epochs=1, verbose=0)
model.save("model.keras")
np.save("x.npy", xs); np.save("y.npy", np.asarray(model(xs)))
"""

LOAD = """
import {imports}
import keras, numpy as np
m = keras.models.load_model("model.keras")
np.testing.assert_allclose(np.asarray(m(np.load("x.npy"))), np.load("y.npy"), rtol=1e-5, atol=1e-6)
assert type(m.loss).__name__ == "SExpLoss" and type(m.optimizer).__name__ == "TF1Adam", (m.loss, m.optimizer)
missing = [c for c in {classes!r} if keras.saving.get_registered_object(c) is None]
assert not missing, missing
print("loaded")
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A model.keras with spherical layers, an S_exp head, its loss, a metric and TF1Adam."""
    folder = tmp_path_factory.mktemp("saved")
    out = run_python(SAVE, folder)
    assert out.returncode == 0, out.stderr[-3000:]
    return folder


@pytest.mark.parametrize("imports", ["spherical_cnn, spherical_regression",
                                     "spherical_regression, spherical_cnn",
                                     "spherical_regression", "spherical_cnn",
                                     "keras, spherical_regression"])
def test_a_model_with_an_sexp_head_loads_after_importing_either_package(saved, imports):
    """Every class of both packages is registered, whichever package is imported, in any order."""
    out = run_python(LOAD.format(imports=imports, classes=sorted(registered_classes())), saved)
    assert out.returncode == 0 and "loaded" in out.stdout, out.stderr[-3000:]



def keras_importing_modules():
    """Dotted names of the packages' modules that import Keras at module level."""
    found = []
    for _, module, tree in package_sources():
        imported = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        imported |= {(n.module or "").split(".")[0] for n in tree.body
                     if isinstance(n, ast.ImportFrom) and not n.level}
        if "keras" in imported:
            found.append(module)
    return found


@pytest.mark.parametrize("first", keras_importing_modules())
def test_classes_register_whichever_module_imports_keras_first(tmp_path, first):
    """Keras first imported by any of the packages' modules (half initialised at that moment,
    and maybe imported by the registration itself, as spherical_cnn.losses is through
    models): still every class registered, and no warning."""
    code = ("import warnings; warnings.simplefilter('error')\n"
            f"import {first}, keras\n"
            f"missing = [c for c in {sorted(registered_classes())!r} "
            "if keras.saving.get_registered_object(c) is None]\n"
            "assert not missing, missing\nprint('ok')")
    out = run_python(code, tmp_path)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]

def test_without_the_packages_keras_cannot_load_it(saved):
    """The control: plain Keras does not know the classes, so the test above tests the import."""
    out = run_python("import keras; keras.models.load_model('model.keras')", saved)
    assert out.returncode != 0 and "Could not locate class" in out.stderr, out.stderr[-3000:]


# -------------------------------------------------------------- finding 10: names, version, typing
def test_modules_and_names_are_attributes_without_importing_keras_first(tmp_path):
    code = """
import sys, spherical_cnn, spherical_regression
assert "keras" not in sys.modules and "tensorflow" not in sys.modules
assert {"SphConv", "layers", "sht", "__version__"} <= set(dir(spherical_cnn)), dir(spherical_cnn)
assert {"SExpHead", "heads", "metrics"} <= set(dir(spherical_regression))
assert spherical_cnn.layers.SphConv is spherical_cnn.SphConv
assert spherical_regression.heads.SExpHead is spherical_regression.SExpHead
for pkg in (spherical_cnn, spherical_regression):
    for name in pkg.__all__:
        getattr(pkg, name)
print("ok")
"""
    out = run_python(code, tmp_path)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-3000:]


def _type_checking_names(module):
    """Names bound by the imports under ``if TYPE_CHECKING:`` in a package's __init__."""
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                names.update(a.asname or a.name for a in imp.names)
    return names


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_editors_see_the_same_names_the_package_exports(package):
    pkg = PACKAGES[package]
    lazy = set(pkg._EXPORTS) | set(pkg._SUBMODULES)
    assert _type_checking_names(pkg) == lazy
    assert set(pkg.__all__) <= lazy and set(pkg._EXPORTS) <= set(pkg.__all__)
    assert len(pkg.__all__) == len(set(pkg.__all__))
    for name, module in pkg._EXPORTS.items():  # each name is the one of the module the table says
        assert getattr(pkg, name) is getattr(importlib.import_module(f"{package}.{module}"), name)


def test_every_saved_keras_class_is_public():
    for entry in registered_classes():
        package, name = entry.split(">")
        assert name in PACKAGES[package].__all__, entry


def test_versions_and_py_typed_ship_with_both_packages():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    version = project["project"]["version"]
    package_data = project["tool"]["setuptools"]["package-data"]
    for name, pkg in PACKAGES.items():
        assert pkg.__version__ == version, name
        assert os.path.isfile(os.path.join(ROOT, name, "py.typed")), name
        assert "py.typed" in package_data.get(name, []), name


def _public_callables():
    for name, pkg in PACKAGES.items():
        for attr in pkg._EXPORTS:
            obj = getattr(pkg, attr)
            if inspect.isclass(obj) and issubclass(obj, Exception):
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{name}.{attr}", obj


def test_public_functions_and_layers_have_type_hints():
    unannotated = []
    for qualname, obj in _public_callables():
        fn = obj.__init__ if inspect.isclass(obj) else obj
        if inspect.isclass(obj) and "__init__" not in vars(obj):
            continue  # inherits its signature (a Keras base class or a head base class)
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
        if not inspect.isclass(obj) and sig.return_annotation is inspect.Signature.empty:
            missing.append("return")
        if missing:
            unannotated.append(f"{qualname}: {', '.join(missing)}")
    assert not unannotated, unannotated
