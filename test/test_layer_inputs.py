"""Layers as a library (issue 20): layouts, complex input, reuse checks, defaults that scale.

Each test starts from the snippet that reproduced a finding of issue 20.
"""
import warnings

import keras
import numpy as np
import pytest

from spherical_cnn import layers, layouts, models, params, sht
from spherical_cnn import sht_tables as tables


def _bandlimited(n, rng, batch=1, channels=1):
    from spherical_cnn.studies import equivariance as eq
    return eq.random_bandlimited(batch, n, channels, rng)


# ---------------------------------------------------------------- finding 2: orientation

@pytest.mark.parametrize("n", [8, 16, 32])
def test_pyshtools_orientation_helpers(n):
    """A map in pyshtools orientation (polar first) passes the shape checks on the square grid
    and gives wrong coefficients; from_pyshtools / to_pyshtools convert exactly."""
    pysh = pytest.importorskip("pyshtools")
    rng = np.random.default_rng(n)
    polar_first = rng.standard_normal((n, n))  # a DH grid as pyshtools holds it: (lat, lon)
    ref = pysh.SHGrid.from_array(polar_first.astype(complex)).expand(normalization="ortho", csphase=-1)
    ref = layouts.coeffs_from_pyshtools(ref)[0, ..., 0]  # (2, L, L)
    t = sht.get_transform(n, "sep", False, "float64")

    def coeffs(m):
        re, im = t.forward(m[None, :, :, None])
        return (np.asarray(re) + 1j * np.asarray(im))[0, ..., 0]

    L = n // 2
    ok = np.ones((2, L, L), bool)
    ok[1, L - 1, L - 1] = False  # the one entry the DH grid does not resolve (REFERENCE.md)
    wrong = coeffs(polar_first)  # the silent mistake: right shape, wrong coefficients
    assert np.abs(wrong - ref)[ok].max() > 0.1
    right = coeffs(layouts.from_pyshtools(polar_first))
    np.testing.assert_allclose(right[ok], ref[ok], atol=1e-10)
    # round trips, batch form, extend=True grids
    maps = rng.standard_normal((2, n, n, 3))
    np.testing.assert_array_equal(layouts.from_pyshtools(layouts.to_pyshtools(maps)), maps)
    one = _bandlimited(n, rng)[0, :, :, 0]
    clm = pysh.SHGrid.from_array(layouts.to_pyshtools(one)).expand()
    ext = clm.expand(grid="DH", extend=True)
    assert ext.data.shape == (n + 1, n + 1)
    np.testing.assert_allclose(layouts.from_pyshtools(ext), one, atol=1e-11)
    with pytest.raises(ValueError, match="sampling=1"):
        layouts.from_pyshtools(np.zeros((n, 2 * n)))


def test_coefficient_helpers_round_trip_with_pyshtools():
    pysh = pytest.importorskip("pyshtools")
    n = 16
    f = _bandlimited(n, 3)
    re, im = sht.get_transform(n, "sep", True, "float64").forward(f)
    c = (np.asarray(re) + 1j * np.asarray(im))[0, ..., 0]  # real layout (1, L, L)
    clm = pysh.SHCoeffs.from_array(layouts.coeffs_to_pyshtools(c), normalization="ortho", csphase=-1)
    back = layouts.from_pyshtools(clm.expand(grid="DH", extend=False).data.real)
    np.testing.assert_allclose(back, f[0, :, :, 0], atol=1e-11)
    re, im = sht.get_transform(n, "sep", False, "float64").forward(f)
    np.testing.assert_allclose(layouts.coeffs_from_pyshtools(clm), np.asarray(re) + 1j * np.asarray(im),
                               atol=1e-11)
    # other normalizations and csphase are converted by pyshtools, not refused
    np.testing.assert_allclose(layouts.coeffs_from_pyshtools(clm.convert(normalization="4pi", csphase=1)),
                               np.asarray(re) + 1j * np.asarray(im), atol=1e-11)


def test_coeffs_from_pyshtools_takes_the_real_kind_of_a_real_map():
    """layouts.md's recipe on a real map gives kind='real' SHCoeffs (cosine / sine
    coefficients); before, they were read as complex ones (relative error 0.72-1.1)."""
    pysh = pytest.importorskip("pyshtools")
    for n in (8, 16, 32):
        f = _bandlimited(n, n)
        clm = pysh.SHGrid.from_array(layouts.to_pyshtools(f[0, :, :, 0])).expand(
            normalization="ortho", csphase=-1)
        assert clm.kind == "real"
        re, im = sht.get_transform(n, "sep", False, "float64").forward(f)
        ours = np.asarray(re) + 1j * np.asarray(im)
        got = layouts.coeffs_from_pyshtools(clm)
        assert np.abs(got - ours).max() <= 1e-10 * np.abs(ours).max()
        with pytest.raises(ValueError, match="real array.*kind='complex'"):
            layouts.coeffs_from_pyshtools(clm.coeffs)


def test_polar_first_helpers_are_exact_inverses():
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 3)).astype("float32")
    for cf in (False, True):
        y = layouts.to_polar_first(x, channels_first=cf)
        assert y.shape == ((2, 3, 8, 8) if cf else (2, 8, 8, 3))
        np.testing.assert_array_equal(layouts.from_polar_first(y, channels_first=cf), x)
    np.testing.assert_array_equal(layouts.to_polar_first(x, channels_first=True)[1, 2], x[1, :, :, 2].T)
    # keras tensors too
    y = layouts.to_polar_first(keras.ops.convert_to_tensor(x), channels_first=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(y), np.transpose(x, (0, 3, 2, 1)))


# ---------------------------------------------------------------- finding 6: complex input

def test_complex_input_is_refused_with_the_fix():
    """complex64 maps (the project's records) lost their imaginary part silently."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, 8, 8, 1)) + 1j * rng.standard_normal((2, 8, 8, 1))).astype("complex64")
    for layer in (layers.SphConv(2), layers.DegreePowerPooling(), layers.SphericalActivation("relu"),
                  layers.SphConv(2, method="naive")):
        with pytest.raises(TypeError, match="complex_to_channels"):
            layer(x)
    t = sht.get_transform(8, "sep", True)
    with pytest.raises(TypeError, match="complex"):
        t.forward(x)
    c = np.zeros((2, 1, 4, 4, 1), "complex64")
    with pytest.raises(TypeError, match=r"\(c.real, c.imag\)"):
        t.inverse(c, c.real)
    with pytest.raises(TypeError, match="complex_to_spectral"):
        t.inverse_packed(np.zeros((2, 2, 1, 4, 4, 1), "complex64"))
    # the fix named in the message works
    y = layers.SphConv(2)(layouts.complex_to_channels(x))
    assert y.shape == (2, 8, 8, 2)
    ma = layouts.complex_to_channels(x, "mag_ang")
    np.testing.assert_allclose(ma[..., 0], np.abs(x[..., 0]), rtol=1e-6)
    np.testing.assert_allclose(ma[..., 1], (x / (np.abs(x) + 1e-8)).imag[..., 0], rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layouts.complex_to_channels(
        keras.ops.convert_to_tensor(x))), layouts.complex_to_channels(x))


# ---------------------------------------------------------------- finding 8: reuse

def test_reusing_a_built_layer_on_other_inputs_gives_a_keras_message():
    """A built SphConv called on another channel count gave a raw einsum error."""
    x = np.random.default_rng(2).standard_normal((2, 16, 16, 3)).astype("float32")
    for make in (lambda: layers.SphConv(4), lambda: layers.SphConv(4, method="naive"),
                 lambda: layers.SphericalActivation("prelu")):
        layer = make()
        layer(x)
        with pytest.raises(ValueError, match=r"incompatible with the layer: expected axis 3 of "
                                             r"input shape to have value 3"):
            layer(x[..., :2])
        if isinstance(layer, layers.SphConv):
            with pytest.raises(ValueError, match="expected axis 1 of input shape to have value 16"):
                layer(x[:, :8, :8])
        else:  # no weights that depend on the grid: other grids are fine
            assert layer(x[:, :8, :8]).shape == (2, 8, 8, 3)
    # stateless: any grid, any channel count
    power = layers.DegreePowerPooling()
    assert power(x).shape == (2, 8 * 3) and power(x[:, :8, :8, :2]).shape == (2, 4 * 2)
    with pytest.raises(ValueError, match="expected ndim=4"):
        power(x[0])
    conv = layers.SphConv(2, spectral_input=True)
    conv(np.zeros((1, 2, 1, 4, 4, 3), "float32"))
    with pytest.raises(ValueError, match="expected axis 5"):
        conv(np.zeros((1, 2, 1, 4, 4, 2), "float32"))


# ---------------------------------------------------------------- finding 5: defaults that scale

def test_default_method_is_sep_and_the_demo_keeps_naive(tmp_path):
    """The default 'naive' needed 1 GB of tables at n = 128 (16 GB at 256)."""
    assert layers.SphConv(2).method == "sep"
    assert layers.SphericalActivation().method == "sep"
    assert layers.DegreePowerPooling().method == "sep"
    # the demo's flags still give the original's numerics: --transform_method naive is honoured
    args = params.parse(["@" + params.bundled_path("model-64"), "--input_res", "16", "--n_classes", "3",
                         "--final_pool", "magnitudes", "--real_inputs", "--logdir", str(tmp_path)])
    assert args.transform_method == "naive"
    model = models.build_model(args, (16, 16, 2))
    used = {l.method for l in model._flatten_layers() if hasattr(l, "method")}
    assert used == {"naive"}
    # and the parser's default is the original's
    assert params.parse(["--logdir", str(tmp_path)]).transform_method == "naive"


def test_table_size_estimate_needs_no_tables_and_matches():
    tables.naive_matrices.cache_clear()
    assert tables.estimate_table_nbytes(256, "naive") == 16 * 2 ** 30
    assert tables.estimate_table_nbytes(128, "naive") == 2 ** 30
    assert tables.estimate_table_nbytes(128, "sep") < 9 * 2 ** 20
    assert tables.naive_matrices.cache_info().currsize == 0  # nothing was built
    for n in (8, 10, 16, 32):
        for method in tables.METHODS:
            for real in (True, False):
                for dtype in ("float32", "float64"):
                    for rows in (None,) + tables.LEGENDRE_ROWS:
                        assert tables.estimate_table_nbytes(n, method, real, dtype, rows) == \
                            tables.table_nbytes(n, method, real, dtype, rows)


def test_naive_at_large_n_warns_when_built():
    sep_mib = round(tables.estimate_table_nbytes(128, "sep") / 2 ** 20)  # the default Legendre step's tables
    with pytest.warns(UserWarning, match=rf"method='naive' needs 1.0 GiB .* method='sep' needs {sep_mib} MiB"):
        layers.SphConv(2, method="naive").build((None, 128, 128, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layers.SphConv(2).build((None, 128, 128, 1))
        layers.SphConv(2, method="naive").build((None, 64, 64, 1))  # the demo's size: 64 MiB


@pytest.mark.parametrize("n", [8, 16, 32])
def test_sep_default_equals_naive(n):
    """The new default computes what the old one did (float32 rounding apart)."""
    x = _bandlimited(n, n, batch=2, channels=3).astype("float32")
    for kind in ("conv", "act", "power"):
        outs = []
        for method in ("naive", "sep"):
            if kind == "conv":
                layer = layers.SphConv(4, n_filter_params=3, method=method, kernel_initializer="ones")
            elif kind == "act":
                layer = layers.SphericalActivation("relu", method=method)
            else:
                layer = layers.DegreePowerPooling(method=method)
            outs.append(np.asarray(layer(x)))
        np.testing.assert_allclose(outs[1], outs[0], atol=2e-4 * np.abs(outs[0]).max())


def test_layout_figure_script_runs(tmp_path):
    """docs/make_layout_figure.py draws docs/grid_layout.png (committed)."""
    import importlib.util
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("make_layout_figure",
                                                  os.path.join(root, "docs", "make_layout_figure.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(str(tmp_path / "grid.png"))
    assert os.path.getsize(out) > 10000
    assert os.path.exists(os.path.join(root, "docs", "grid_layout.png"))
