"""Reading pickled data files without running code from them.

A pickle names functions ("globals") that the loader calls while loading, so
``pickle.load`` on an untrusted file can run anything (e.g. ``os.system``).
:class:`RestrictedUnpickler` resolves only the globals that NumPy arrays and
scalars, ordered dicts and Python-2 byte strings need, and refuses every other one
with a :class:`spherical_cnn.errors.DataError` naming the file and the global,
before it is called. Dicts, lists, tuples, strings and numbers are built by pickle
opcodes and need no global.

Admitted globals (module, name):
  numpy.core.multiarray / numpy._core.multiarray: _reconstruct, scalar
  numpy.core.numeric / numpy._core.numeric: _frombuffer (protocol-5 arrays; it
      refuses object dtypes)
  numpy: ndarray, dtype
  _codecs: encode, only as encode(str, 'latin1') (how Python 3 writes bytes at
      protocol 2; any other codec is refused)
  collections: OrderedDict

Files written by Python 2 (like ModelNet10-SO3's ``viewID2quat.pkl``) are read with
``encoding='latin1'``, which turns Python-2 ``str`` into ``str`` and lets NumPy
rebuild array data from them.
"""
import codecs
import collections
import io
import pickle

import numpy as np

from spherical_cnn import errors

try:  # NumPy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


def _latin1_encode(obj, encoding="utf-8", errors_="strict"):
    """``_codecs.encode`` restricted to what protocol-2 pickles of bytes use."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(
            f"_codecs.encode admitted only as encode(str, 'latin1'), got encoding {encoding!r}")
    return codecs.encode(obj, "latin1")


ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global that is not admitted."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module, name):
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise RefusedGlobal(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")


def loads(data, path="<bytes>", encoding="latin1"):
    """Unpickle ``data`` (bytes) with :class:`RestrictedUnpickler`; ``path`` names the
    source in error messages. Raises ``errors.DataError`` for a refused global or a
    malformed pickle."""
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except RefusedGlobal as e:
        raise errors.DataError(
            f"{path}: refused to load the pickle: it names the global {e}, which is not "
            "a NumPy array, dict or string (only those are read from pickles; the file may "
            "be corrupt or malicious)", path=path) from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            KeyError, TypeError, ValueError, UnicodeDecodeError, MemoryError) as e:
        raise errors.DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})",
                               path=path) from None


def load(path, encoding="latin1"):
    """Unpickle the file at ``path`` with :class:`RestrictedUnpickler` (see :func:`loads`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise errors.DataError(f"{path}: cannot read ({e.strerror or e})", path=path) from None
    return loads(data, path=str(path), encoding=encoding)
