"""The Sweet Home 3D furniture importer on tiny archives written here (never the real package).

The independent facts checked: the catalog's width/depth/height (the converted
model's bounding box must match them up to one scale, which fails for a wrong
reading of modelRotation or of y-up), and a chair built with its seat on top of
its legs (the seat must be above the feet along z after conversion).
"""
import csv
import io
import os
import stat
import tarfile
import zipfile

import numpy as np
import pytest

from spherical_cnn.cli import import_furniture
from spherical_cnn.data import furniture, meshes
from spherical_cnn.errors import run_cli

LEG, SEAT_Y, SEAT_T, BACK = 45.0, 45.0, 5.0, 40.0  # chair: legs 0..45, seat 45..50, backrest 50..90 (y-up)
CHAIR_DIMS = (40.0, 42.0, 90.0)  # width (x), depth (z in the OBJ), height (y in the OBJ)
BED_DIMS = (160.0, 200.0, 50.0)  # width, depth, height
# A bed modelled with its width along z, height along x and length along y. Its
# modelRotation (row-major, applied as M v) sends x -> y (up), y -> z (depth), z -> x (width).
BED_ROTATION = "0 0 1 1 0 0 0 1 0"


def box(lo, hi):
    """8 vertices and 12 triangles of an axis-aligned box."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    v = np.array([[(hi if (i >> k) & 1 else lo)[k] for k in range(3)] for i in range(8)])
    q = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = [t for a, b, c, d in q for t in ((a, b, c), (a, c, d))]
    return v, np.array(f)


def obj_text(parts, quads=False):
    """OBJ text of boxes (one group each, 1-based indices, v/vt/vn face tokens)."""
    lines, n = ["# test model", "mtllib model.mtl"], 0
    for g, (v, f) in enumerate(parts):
        lines.append(f"g part{g}")
        lines += [f"v {x:.4f} {y:.4f} {z:.4f}" for x, y, z in v]
        lines += [f"f {a + n + 1}/1/1 {b + n + 1}/1/1 {c + n + 1}/1/1" for a, b, c in f]
        n += len(v)
    return "\n".join(lines) + "\n"


def chair_parts(scale=1.0, offset=(0, 0, 0)):
    w, d = CHAIR_DIMS[0], CHAIR_DIMS[1]
    parts = []
    for x in (0, w - 4):
        for z in (0, d - 4):
            parts.append(box((x, 0, z), (x + 4, LEG, z + 4)))  # legs: feet at y = 0
    parts.append(box((0, SEAT_Y, 0), (w, SEAT_Y + SEAT_T, d)))  # seat
    parts.append(box((0, SEAT_Y + SEAT_T, 0), (w, CHAIR_DIMS[2], 4)))  # backrest at the back (z = 0)
    return [(v * scale + np.asarray(offset), f) for v, f in parts]


def bed_parts():
    w, d, h = BED_DIMS  # model axes: x = up, y = length (depth), z = width
    parts = [box((0, y, z), (20, y + 5, z + 5)) for y in (0, d - 5) for z in (0, w - 5)]  # legs, low x
    parts.append(box((20, 0, 0), (h, d, w)))  # mattress above the legs
    return parts


def catalog(items, license_text="Test licence"):
    lines = ["# test catalog", f"license={license_text}", "id=test"]
    for i, it in enumerate(items, 1):
        lines += [f"name#{i}={it['name']}", f"category#{i}=Test", f"model#{i}=/{it['path']}",
                  f"width#{i}={it['dims'][0]}", f"depth#{i}={it['dims'][1]}", f"height#{i}={it['dims'][2]}",
                  f"creator#{i}={it.get('creator', 'Tester')}"]
        if it.get("rotation"):
            lines.append(f"modelRotation#{i}={it['rotation']}")
    return "\n".join(lines) + "\n"


def write_sh3f(path, items, extra=None):
    """A .sh3f-like zip: catalog + one OBJ (and an MTL) per item."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("PluginFurnitureCatalog.properties", catalog(items))
        z.writestr("PluginFurnitureCatalog_fr.properties", "name#1=Chaise\n")
        z.writestr("LICENSE.TXT", "test licence text")
        for it in items:
            z.writestr(it["path"], it["obj"])
        for d in sorted({os.path.dirname(it["path"]) for it in items}):
            z.writestr(d + "/model.mtl", "newmtl a\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return str(path)


CHAIR = {"name": "Kitchen chair", "path": "lib/chair/chair.obj", "dims": CHAIR_DIMS,
         "obj": obj_text(chair_parts()), "creator": "Alice"}
BED = {"name": "Bed", "path": "lib/bed/bed.obj", "dims": BED_DIMS, "rotation": BED_ROTATION,
       "obj": obj_text(bed_parts()), "creator": "Bob"}


def convert(out, source, **kw):
    kw.setdefault("min_per_class", 1)
    return furniture.convert(str(out), str(source), progress=False, **kw)


def read_off(path):
    return meshes.read_mesh(str(path))


def converted(out, cls):
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(out, cls)) for f in fs]
    assert len(files) == 1, files
    return read_off(files[0])


@pytest.fixture
def tiny(tmp_path):
    return write_sh3f(tmp_path / "Tiny.sh3f", [CHAIR, BED])


def test_bounding_boxes_match_the_catalog_dimensions(tiny, tmp_path):
    out = tmp_path / "tree"
    summary = convert(out, tiny)
    assert summary["classes"] == ["bed", "chair"]
    for cls, dims in (("chair", CHAIR_DIMS), ("bed", BED_DIMS)):
        ext = np.ptp(converted(out, cls).vertices, axis=0)  # x = width, y = depth, z = height
        ratio = ext / np.asarray(dims)
        np.testing.assert_allclose(ratio / ratio.mean(), 1, atol=0.01, err_msg=cls)


def test_the_other_reading_of_model_rotation_would_not_match(tmp_path):
    """The test has teeth: the transposed matrix gives extents that do not fit the catalog."""
    v, _ = furniture.parse_obj(BED["obj"].encode())
    m = furniture.rotation_matrix(BED_ROTATION.split())
    check = furniture.rotation_convention_check(v, m, BED_DIMS)
    assert check["rows"] < 0.01 and check["columns"] > 0.2, check


def test_chair_seat_is_above_the_feet_and_the_bed_is_not_upside_down(tiny, tmp_path):
    out = tmp_path / "tree"
    convert(out, tiny)
    chair = converted(out, "chair")
    v, f = np.asarray(chair.vertices), np.asarray(chair.faces)
    z0, height = v[:, 2].min(), np.ptp(v[:, 2])
    legs, seat = v[np.unique(f[:48])], v[np.unique(f[48:60])]  # faces keep the OBJ's order
    assert np.isclose(legs[:, 2].min(), z0)  # the feet are the lowest points
    seat_level = (seat[:, 2].min() - z0) / height
    assert abs(seat_level - SEAT_Y / CHAIR_DIMS[2]) < 0.01, seat_level
    # backrest at the model's back (z = 0 in the OBJ, its -z): after y-up -> z-up it is at +y
    back = v[np.unique(f[60:72])]
    assert back[:, 1].min() > v[:, 1].max() - 0.2 * np.ptp(v[:, 1])
    bed = converted(out, "bed")
    bv, bf = np.asarray(bed.vertices), np.asarray(bed.faces)
    mattress = bv[np.unique(bf[48:60])]
    assert mattress[:, 2].max() == pytest.approx(bv[:, 2].max())  # legs below, mattress on top
    assert mattress[:, 2].min() > bv[:, 2].min() + 0.3 * np.ptp(bv[:, 2])


def test_tree_is_what_the_builder_reads_and_licences_are_beside_it(tiny, tmp_path):
    out = tmp_path / "tree"
    convert(out, tiny)
    classes, train = meshes.find_meshes(str(out), "train")
    _, test = meshes.find_meshes(str(out), "test")
    assert classes == ["bed", "chair"] and len(train) + len(test) == 2
    rows = list(csv.DictReader(open(out / "LICENSES.csv")))
    assert {r["name"]: (r["creator"], r["licence"], r["class"]) for r in rows} == {
        "Kitchen chair": ("Alice", "Test licence", "chair"), "Bed": ("Bob", "Test licence", "bed")}
    assert all(os.path.exists(out / r["file"]) for r in rows)
    assert (out / "licenses" / "Tiny.txt").read_text() == "test licence text"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no staging folder left


def test_identical_geometry_in_another_archive_is_written_once(tiny, tmp_path):
    d = tmp_path / "pkg"
    d.mkdir()
    os.replace(tiny, d / "A.sh3f")
    # the same chair in another archive: moved, scaled, vertices of another part order
    same = dict(CHAIR, name="Chair", path="other/c.obj", creator="Carol",
                obj=obj_text(list(reversed(chair_parts(scale=2.0, offset=(5, 0, -3))))))
    write_sh3f(d / "B.sh3f", [same])
    out = tmp_path / "tree"
    summary = convert(out, d)
    assert summary["counts"]["chair"] == {"train": 1, "test": 0}
    left = list(csv.DictReader(open(out / "LEFT_OUT.csv")))
    assert [(r["archive"], r["name"]) for r in left] == [("B", "Chair")]
    assert left[0]["reason"].startswith("duplicate geometry of A item 1")


def many_tables(n, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        w, d, h = rng.uniform(40, 200, 3)
        v, f = box((0, 0, 0), (w, h, d))
        items.append({"name": "Table", "path": f"t/t{i}.obj", "dims": (w, d, h), "obj": obj_text([(v, f)])})
    return items


def test_split_is_deterministic(tmp_path):
    src = write_sh3f(tmp_path / "T.sh3f", many_tables(10))
    trees = []
    for k in range(2):
        out = tmp_path / f"tree{k}"
        convert(out, src, test_fraction=0.3)
        trees.append(sorted(os.path.relpath(os.path.join(dp, f), out)
                            for dp, _, fs in os.walk(out / "table") for f in fs))
    assert trees[0] == trees[1]
    assert sum("/test/" in p for p in trees[0]) == 3 and len(trees[0]) == 10


def test_min_per_class_leaves_a_small_class_out(tiny, tmp_path):
    with pytest.raises(furniture.FurnitureError, match="no class with at least 2"):
        convert(tmp_path / "tree", tiny, min_per_class=2)
    assert not os.path.exists(tmp_path / "tree")


def test_unreadable_obj_is_skipped_and_named_the_rest_goes_on(tmp_path, capsys):
    bad = {"name": "Broken chair", "path": "lib/bad/bad.obj", "dims": CHAIR_DIMS,
           "obj": "v 1 2 3\nv 1 2 x\nf 1 2 3\n"}
    src = write_sh3f(tmp_path / "Tiny.sh3f", [CHAIR, BED, bad])
    out = tmp_path / "tree"
    status = run_cli(import_furniture.main, [src, "--out", str(out), "--min_per_class", "1"], prog="imp")
    err = capsys.readouterr().err
    assert status == 1
    skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "lib/bad/bad.obj" in skipped[0] and "Broken chair" in skipped[0]
    assert "line 2" in skipped[0]
    assert sorted(os.listdir(out / "chair" / "train")) == ["tiny-001-kitchen-chair.off"]
    left = list(csv.DictReader(open(out / "LEFT_OUT.csv")))
    assert [r["name"] for r in left] == ["Broken chair"]


def test_corrupt_archive_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "Broken.sh3f"
    src.write_bytes(b"PK\x03\x04 this is not a zip file" * 10)
    out = tmp_path / "tree"
    status = run_cli(import_furniture.main, [str(src), "--out", str(out)], prog="imp")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0].startswith("imp: error: ") and "Broken.sh3f" in err[0] and "corrupt archive" in err[0]
    assert not os.path.exists(out)


def test_archive_without_catalog_is_named(tmp_path):
    src = tmp_path / "Empty.sh3f"
    with zipfile.ZipFile(src, "w") as z:
        z.writestr("readme.txt", "x")
    with pytest.raises(furniture.FurnitureError, match="Empty.sh3f: no PluginFurnitureCatalog"):
        convert(tmp_path / "tree", src)


def write_deb(path, sh3f, compression="xz"):
    """A minimal Debian package (ar: debian-binary, control.tar.gz, data.tar.xz) holding ``sh3f``."""
    def tar_bytes(members, mode):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as t:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    data = open(sh3f, "rb").read()
    members = [("debian-binary", b"2.0\n"),
               ("control.tar.gz", tar_bytes([("./control", b"Package: x\n")], "w:gz")),
               (f"data.tar.{compression}", tar_bytes(
                   [("./usr/share/sweethome3d/furniture/Tiny.sh3f", data)], f"w:{compression}"))]
    with open(path, "wb") as f:
        f.write(b"!<arch>\n")
        for name, blob in members:
            f.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode())
            f.write(blob + (b"\n" if len(blob) % 2 else b""))
    return str(path)


def test_deb_folder_and_archive_sources_give_the_same_tree(tiny, tmp_path):
    deb = write_deb(tmp_path / "furniture_1.0_all.deb", tiny)
    folder = tmp_path / "extracted" / "usr" / "share"
    folder.mkdir(parents=True)
    os.link(tiny, folder / "Tiny.sh3f")
    listings = []
    for k, src in enumerate((deb, tmp_path / "extracted", tiny)):
        out = tmp_path / f"tree{k}"
        convert(out, src)
        listings.append(sorted(os.path.relpath(os.path.join(dp, f), out) for dp, _, fs in os.walk(out)
                               for f in fs if f.endswith(".off")))
    assert listings[0] == listings[1] == listings[2] and len(listings[0]) == 2


def test_corrupt_deb_is_named(tmp_path):
    deb = tmp_path / "bad.deb"
    deb.write_bytes(b"!<arch>\nnot really")
    with pytest.raises(furniture.FurnitureError, match="bad.deb: not a readable Debian package"):
        convert(tmp_path / "tree", deb)


PATH = os.environ.get("PATH", "/usr/bin:/bin")


def test_no_package_manager_and_unknown_package(tmp_path, monkeypatch):
    monkeypatch.setattr(furniture, "INSTALLED_PATH", str(tmp_path / "not-installed"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(furniture.FurnitureError, match="no package manager: apt-get not found"):
        furniture.convert(str(tmp_path / "tree"), None, progress=False)
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'E: Unable to locate package sweethome3d-furniture' >&2\nexit 100\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + PATH)
    with pytest.raises(furniture.FurnitureError, match="package sweethome3d-furniture not found by apt-get"):
        furniture.convert(str(tmp_path / "tree"), None, progress=False)
    assert not os.path.exists(tmp_path / "tree")


def test_apt_get_download_is_used_when_no_source_is_given(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(furniture, "INSTALLED_PATH", str(tmp_path / "not-installed"))
    deb = write_deb(tmp_path / "furniture_1.0_all.deb", tiny)
    fake = tmp_path / "bin" / "apt-get"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = download ] && cp '{deb}' ./sweethome3d-furniture_1.0_all.deb\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(fake.parent) + os.pathsep + PATH)
    summary = furniture.convert(str(tmp_path / "tree"), None, progress=False, min_per_class=1)
    assert summary["source"].startswith("apt-get download sweethome3d-furniture")
    assert summary["n_meshes"] == 2


def test_interrupted_conversion_leaves_nothing(tiny, tmp_path, monkeypatch):
    out = tmp_path / "tree"
    out.mkdir()
    (out / "keep.txt").write_text("old tree")
    calls = []

    def write_then_interrupt(path, v, f):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, v, f)
    real = furniture.write_off
    monkeypatch.setattr(furniture, "write_off", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert(out, tiny, overwrite=True)
    assert os.listdir(out) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["Tiny.sh3f", "tree"]  # no hidden staging folder


def test_existing_output_needs_overwrite(tiny, tmp_path):
    out = tmp_path / "tree"
    convert(out, tiny)
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert(out, tiny)
    convert(out, tiny, overwrite=True)


def test_class_mapping_table():
    assert furniture.classify("Desk lamp")[0] == "lamp"
    assert furniture.classify("Glass door cabinet")[0] == "cabinet"
    assert furniture.classify("Futon couch")[0] == "sofa"
    assert furniture.classify("Futon")[0] == "bed"
    assert furniture.classify("Bedside table")[0] == "table"
    assert furniture.classify("Sitting female")[0] == "person"
    assert furniture.classify("Winchester armchair")[0] == "armchair"
    assert furniture.classify("Double French window 3 panes")[0] == "window"
    assert furniture.classify("Table tennis")[0] is None
    assert furniture.classify("Wall switch") == (None, "name matches no class of the mapping table")


def test_properties_parser():
    text = "# c\n! c\nname#1=Caf\\u00e9 chair\nlong#1=a \\\n    b\nkey\\=x : v\nempty#1=\n"
    p = furniture.parse_properties(text)
    assert p == {"name#1": "Café chair", "long#1": "a b", "key=x": "v", "empty#1": ""}


def test_obj_parser_polygons_and_negative_indices():
    v, f = furniture.parse_obj(b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf -4 -3 -2 -1\nvt 0 0\n")
    assert len(v) == 4 and f.tolist() == [[0, 1, 2], [0, 2, 3]]
    with pytest.raises(furniture.DataError, match="m.obj: face index out of range"):
        furniture.parse_obj(b"v 0 0 0\nf 1 2 3\n", "m.obj")
    with pytest.raises(furniture.DataError, match="no triangle"):
        furniture.parse_obj(b"v 0 0 0\n", "m.obj")
