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


def _format_parameter(p):
    text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
    if p.annotation is not p.empty:  # as written (the modules use postponed annotations)
        ann = p.annotation if isinstance(p.annotation, str) else inspect.formatannotation(p.annotation)
        text += ": " + ann
    if p.default is not p.empty:
        text += (" = " if p.annotation is not p.empty else "=") + repr(p.default)
    return text


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """Keras classes define ``__new__(*args, **kwargs)``: show ``__init__``'s parameters."""
    if what != "class" or signature != "(*args, **kwargs)":
        return None
    try:
        params = list(inspect.signature(obj.__init__).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return None
    texts, star = [], False
    for p in params:
        if p.kind == p.KEYWORD_ONLY and not star:
            texts.append("*")
        star = star or p.kind in (p.KEYWORD_ONLY, p.VAR_POSITIONAL)
        texts.append(_format_parameter(p))
    return "(" + ", ".join(texts) + ")", None


def setup(app):
    app.connect("autodoc-process-docstring", _plain_text_docstrings)
    app.connect("autodoc-process-signature", _init_signature)
