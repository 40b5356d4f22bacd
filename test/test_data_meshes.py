"""Mesh loading: ModelNet's malformed OFF header, normalisation, clear errors."""
import numpy as np
import pytest
import trimesh

from spherical_cnn.data import meshes

TETRA = '0 0 0\n2 0 0\n0 4 0\n0 0 6\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n'


@pytest.mark.parametrize('header', ['OFF\n4 4 0\n', 'OFF4 4 0\n', 'OFF 4 4 0\n'])
def test_off_headers_including_modelnet_fused_one(tmp_path, header):
    p = tmp_path / 'm.off'
    p.write_text(header + TETRA)
    m = meshes.load_mesh(str(p))
    assert m.faces.shape == (4, 3)
    # centred on the bounding box and scaled into the unit ball
    np.testing.assert_allclose(m.bounds.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(m.vertices, axis=1).max(), 1, atol=1e-12)
    # closed form: bbox centre (1, 2, 3), every vertex then at distance sqrt(14)
    ref = np.array([[0, 0, 0], [2, 0, 0], [0, 4, 0], [0, 0, 6]], float)
    np.testing.assert_allclose(m.vertices, (ref - [1, 2, 3]) / np.sqrt(14), atol=1e-12)


def test_other_formats(tmp_path):
    box = trimesh.creation.box(extents=[1, 2, 3])
    for ext in ('obj', 'stl', 'ply'):
        p = tmp_path / f'b.{ext}'
        box.export(str(p))
        m = meshes.load_mesh(str(p))
        np.testing.assert_allclose(np.linalg.norm(m.vertices, axis=1).max(), 1, atol=1e-6)


@pytest.mark.parametrize('text', ['', 'OFF\n0 0 0\n', 'garbage that is not a mesh\n\x00\x01',
                                  'OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n'])
def test_broken_meshes_raise_mesh_error_naming_the_file(tmp_path, text):
    p = tmp_path / 'bad.off'
    p.write_text(text)
    with pytest.raises(meshes.MeshError, match='bad.off'):
        meshes.load_mesh(str(p))


def test_unsupported_extension(tmp_path):
    p = tmp_path / 'x.txt'
    p.write_text('hi')
    with pytest.raises(meshes.MeshError, match='unsupported'):
        meshes.load_mesh(str(p))
