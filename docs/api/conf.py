"""Sphinx configuration of the API reference (autodoc + napoleon), built by test/test_docs.py.

Build by hand: ``python -m sphinx -W -b html docs/api /tmp/api-html``.
"""
import inspect
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)
# JAX, if installed, imports much faster than TensorFlow; the documented modules use keras.ops only.
os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "spherical-cnn"
author = "spherical-cnn contributors"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The docstrings are written as plain text with ``literals``: |x| (a norm) and a*b are
# not reStructuredText markup, so they are escaped outside literals and roles.
_LITERAL = re.compile(r"(``.*?``|:[a-z:]+:`[^`]*`)")
_MARKUP = re.compile(r"(?<!\\)([|*])")


def _escape(line):
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else _MARKUP.sub(r"\\\1", p) for i, p in enumerate(parts))


def _plain_text_docstrings(app, what, name, obj, options, lines):
    lines[:] = [_escape(line) for line in lines]


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """Keras classes define ``__new__(*args, **kwargs)``: show ``__init__``'s parameters."""
    if what != "class" or signature != "(*args, **kwargs)":
        return None
    try:
        sig = inspect.signature(obj.__init__, eval_str=True)
    except (TypeError, ValueError, NameError):
        return None
    params = list(sig.parameters.values())[1:]  # without self
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty)), None


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_docstrings)
    app.connect("autodoc-process-signature", _init_signature)
