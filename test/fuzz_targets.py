"""The parsers of files we did not write, as fuzz targets (Hypothesis strategies + checks).

Shared by the CI property tests (test/test_fuzz.py: fixed seed, fixed budget) and the
standing fuzz benchmark (benchmarks/fuzz.py: a time budget per parser). Each target
turns one generated input into a file, runs the parser, and returns None when the
outcome is acceptable, else a :class:`Failure`:

- acceptable: a result, or the project's one-line error (the exception types the parser
  documents, a one-line message naming the file);
- a failure: any other exception (a traceback for the user), a message of several lines
  or one that does not name the file.

Inputs are built from the format's own pieces (headers, counts, numbers, indices, with
extreme and malformed values mixed in) and then mutated byte-wise (flips, cuts,
insertions), so that they get past the first check of each parser.
"""
import dataclasses
import gzip
import io
import os
import re
import struct
import traceback
import types
import zipfile

from hypothesis import strategies as st

from spherical_cnn.errors import UserError

# ---------------------------------------------------------------------------- outcomes


@dataclasses.dataclass
class Failure:
    kind: str  # exception type, or 'message'
    where: str  # innermost frame of the project or library that raised (file:line)
    text: str

    @property
    def key(self):
        """Failures with the same key are one distinct failure."""
        return "{} at {}".format(self.kind, self.where)


def _where(err):
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "?"
    f = frames[-1]
    return "{}:{}".format(os.path.relpath(f.filename, os.getcwd()) if f.filename.startswith(os.getcwd())
                          else os.path.basename(f.filename), f.lineno)


def run_parser(fn, allowed, name):
    """Call ``fn()``; None if it returns or raises one of ``allowed`` with a one-line message
    naming ``name``; a Failure otherwise."""
    try:
        fn()
    except allowed as err:
        text = str(err)
        if "\n" in text.strip() or (name and name not in text):
            return Failure("message", _where(err), "{}: {}".format(type(err).__name__, text[:300]))
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # noqa: B902 - anything else is what the fuzzing looks for
        return Failure(type(err).__name__, _where(err), " ".join(str(err).split())[:300])
    return None


# ---------------------------------------------------------------------------- building blocks

NUMBERS = st.one_of(
    st.integers(-5, 20).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-0", "0x10", "1_0", "", "e", "--1", "1e", "٣",
                     "99999999999999999999", "4294967296", "-2147483649"]),
)
JUNK = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)


@st.composite
def mutated(draw, base):
    """``base`` (bytes) with a few byte-level mutations: flip, cut, insert, overwrite with an
    extreme 4- or 8-byte integer (length and count fields)."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "int", "none"]))
        pos = draw(st.integers(0, max(len(data), 1))) if data else 0
        if op == "flip" and data:
            i = min(pos, len(data) - 1)
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif op == "int" and data:
            fmt = draw(st.sampled_from(["<I", ">I", "<Q", ">Q"]))
            value = draw(st.sampled_from([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1] +
                                         ([2 ** 63, 2 ** 64 - 1] if "Q" in fmt else [])))
            data[pos:pos + struct.calcsize(fmt)] = struct.pack(fmt, value)
    return bytes(data)


def _write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---------------------------------------------------------------------------- OFF, OBJ


@st.composite
def off_text(draw):
    nv = draw(st.one_of(st.integers(0, 8), st.sampled_from([-1, 10 ** 9, 2 ** 31, 2 ** 63])))
    nf = draw(st.one_of(st.integers(0, 8), st.sampled_from([-1, 10 ** 9, 2 ** 31])))
    head = draw(st.sampled_from(["OFF\n{} {} 0\n", "OFF{} {} 0\n", "OFF\n# c\n{} {}\n", "COFF\n{} {} 0\n",
                                 "{} {} 0\n", "OFF {} {} 0\n", "OFF\n{} {} 0 7 8\n", "OFF\n\n{}\n{}\n0\n"]))
    lines = [head.format(nv, nf)]
    for _ in range(draw(st.integers(0, 9))):
        lines.append(" ".join(draw(st.lists(NUMBERS, min_size=0, max_size=5))) + "\n")
    for _ in range(draw(st.integers(0, 9))):
        k = draw(st.integers(0, 6))
        idx = draw(st.lists(st.one_of(st.integers(-3, 12), st.sampled_from([2 ** 31, 2 ** 63])),
                            min_size=0, max_size=6))
        lines.append(" ".join([str(k)] + [str(i) for i in idx]) + "\n")
    return "".join(lines).encode("utf-8", "surrogatepass")


@st.composite
def obj_text(draw):
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["v", "v", "v", "f", "f", "vt", "vn", "g", "o", "usemtl", "s", "l", "p", "#", "x"]))
        if kind in ("f", "l", "p"):
            toks = []
            for _ in range(draw(st.integers(0, 6))):
                i = draw(st.one_of(st.integers(-6, 10), st.sampled_from([0, 2 ** 31, -(2 ** 31), 10 ** 20])))
                toks.append(draw(st.sampled_from(["{}", "{}/", "{}/1", "{}//1", "{}/1/1", "/{}", "{}x"])).format(i))
            lines.append(kind + " " + " ".join(toks))
        elif kind in ("v", "vt", "vn"):
            lines.append(kind + " " + " ".join(draw(st.lists(NUMBERS, min_size=0, max_size=6))))
        else:
            lines.append(kind + " " + draw(JUNK))
    sep = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return sep.join(lines).encode("utf-8", "surrogatepass")


def check_mesh(ext):
    from spherical_cnn.data import meshes

    def check(data, tmp):
        path = _write(tmp, "m" + ext, data)
        return run_parser(lambda: meshes.load_mesh(path), meshes.MeshError, path)
    return check


def check_furniture_obj(data, tmp):
    from spherical_cnn.data import furniture
    from spherical_cnn.errors import DataError
    return run_parser(lambda: furniture.parse_obj(data, "lib/x.obj"), DataError, "lib/x.obj")


# ---------------------------------------------------------------------------- IDX


@st.composite
def idx_bytes(draw):
    ndim = draw(st.one_of(st.integers(0, 4), st.just(255)))
    dims = [draw(st.one_of(st.integers(0, 6), st.sampled_from([2 ** 31, 2 ** 32 - 1, 70000])))
            for _ in range(min(ndim, 5))]
    head = bytes([0, 0, draw(st.sampled_from([8, 8, 8, 9, 0x0D])), ndim]) + b"".join(
        struct.pack(">I", d) for d in dims)
    n = 1
    for d in dims:
        n *= d
    body = draw(st.binary(min_size=0, max_size=64)) if n > 64 else bytes(n)
    data = draw(mutated(st.just(head + body)))
    if draw(st.booleans()):
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = draw(mutated(st.just(data)))
    return data


def check_idx(data, tmp):
    from spherical_cnn.data import images
    from spherical_cnn.errors import DataError
    path = _write(tmp, "train-images-idx3-ubyte.gz", data)
    return run_parser(lambda: images.read_idx(path, None), DataError, path)


# ---------------------------------------------------------------------------- images (predict)


def _seed_images():
    import numpy as np
    from PIL import Image
    out = []
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(buf, format=fmt)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.arange(12.0).reshape(3, 4) / 12)
    out.append(buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([object(), 1], dtype=object), allow_pickle=True)
    out.append(buf.getvalue())
    return out


IMAGE_SEEDS = None


@st.composite
def image_bytes(draw):
    global IMAGE_SEEDS
    if IMAGE_SEEDS is None:
        IMAGE_SEEDS = _seed_images()
    k = draw(st.integers(0, len(IMAGE_SEEDS)))
    base = st.binary(max_size=64) if k == len(IMAGE_SEEDS) else st.just(IMAGE_SEEDS[k])
    ext = draw(st.sampled_from([".png", ".jpg", ".npy", ".gif", ".bmp", ".tif"]))
    return ext, draw(mutated(base))


def check_image(item, tmp):
    from spherical_cnn.cli import predict
    ext, data = item
    path = _write(tmp, "img" + ext, data)
    reports = []
    args = types.SimpleNamespace(input_res=8)
    failure = run_parser(lambda: predict.image_rows([path], args, reports.append), (), path)
    if failure is None and reports and (len(reports) != 1 or path not in reports[0] or "\n" in reports[0]):
        failure = Failure("message", "report", reports[0][:300])
    return failure


# ---------------------------------------------------------------------------- catalogs (.sh3f)

OBJ_MODEL = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n"


@st.composite
def catalog(draw):
    lines = [draw(st.sampled_from(["# c", "license=GPL", "id=x", "", "! bang", "key\\", " \\u00e9=1"]))]
    for i in range(draw(st.integers(0, 4))):
        i = draw(st.sampled_from([i + 1, 0, -1, 10 ** 12]))
        name = draw(st.sampled_from(["Chair", "Table lamp", "Bed", "x", "", "Sofa\\", "Door\\u00"]))
        lines.append("name#{}={}".format(i, name))
        for key in ("width", "depth", "height"):
            if draw(st.booleans()):
                lines.append("{}#{}={}".format(key, i, draw(NUMBERS)))
        model = draw(st.sampled_from(["/m.obj", "m.obj", "/../m.obj", "/x/../../m.obj", "/missing.obj",
                                      "/m.OBJ", "/m.3ds", "", "C:\\m.obj", "m.obj\\u0000"]))
        lines.append("model#{}={}".format(i, model))
        if draw(st.booleans()):
            lines.append("modelRotation#{}={}".format(i, " ".join(draw(st.lists(NUMBERS, max_size=10)))))
        if draw(st.booleans()):
            lines.append(draw(JUNK))
    text = draw(st.sampled_from(["\n", "\r\n"])).join(lines)
    return draw(mutated(st.just(text.encode("latin-1", "replace"))))


def check_catalog(data, tmp):
    from spherical_cnn.data import furniture
    path = os.path.join(tmp, "Fuzz.sh3f")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("PluginFurnitureCatalog.properties", data)
        z.writestr("m.obj", OBJ_MODEL)
    warnings = []

    def run():
        kept, _, _ = furniture.collect([path], progress=False, warn=warnings.append)
        import numpy as np
        for k in kept:
            if not np.all(np.isfinite(k["vertices"])):
                raise AssertionError("non-finite vertices kept for {!r}".format(k["name"]))
    failure = run_parser(run, furniture.FurnitureError, path)
    if failure is None and any("\n" in w or path not in w for w in warnings):
        failure = Failure("message", "warning", [w for w in warnings if "\n" in w or path not in w][0][:300])
    return failure


# ---------------------------------------------------------------------------- params, @files, flags.yaml

FLAGS = ["--n_epochs", "--input_res", "--nfilters", "--pool_layers", "--learning_rate", "--dset",
         "--train_bsize", "--model", "--dtype", "--mag_ang", "--seed", "--nchannels", "--first_n",
         "--nonlin", "--pool", "--transform_method", "--n_filter_params", "--concat_branches",
         "--dropout", "--n_classes", "--mixed_precision", "-ne", "-res", "--unknown_flag", "--"]
VALUES = st.one_of(NUMBERS, JUNK, st.sampled_from(["{0: 0.1}", "{0: 1, 5: 2}", "{", "{0: nan}", "16,16",
                                                   "1,,2", "two_branch", "complex64", "@", "@missing.txt",
                                                   "@self", "'a'", " ", "\t", "\x00"]))


@st.composite
def argfile(draw):
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        lines.append(draw(st.one_of(st.sampled_from(FLAGS), VALUES)))
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines).encode("utf-8", "surrogatepass")


def check_params(data, tmp):
    """``params.parse(['@FILE'])`` through run_cli: exit 0, or 2 with one stderr line naming
    the @file or the flag."""
    import contextlib
    from spherical_cnn import params
    from spherical_cnn.errors import run_cli
    path = _write(tmp, "args.txt", data.replace(b"@self", b"@" + os.fsencode(os.path.join(tmp, "args.txt"))))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = run_cli(lambda a: params.parse(a) and None, ["@" + path], prog="train.py")
        except SystemExit as e:
            status = e.code
        except BaseException as e:  # noqa: B902
            return Failure(type(e).__name__, _where(e), " ".join(str(e).split())[:300])
    lines = [l for l in err.getvalue().splitlines() if l.strip()]
    if status == 0:
        return None
    if status != 2 or len(lines) != 1 or not re.match(r"^\S+: error: ", lines[0]):
        return Failure("message", "exit {}".format(status), " | ".join(lines)[:300])
    return None


@st.composite
def flags_yaml(draw):
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        key = draw(st.sampled_from(["input_res", "nfilters", "learning_rate", "dset", "model", "n_epochs",
                                    "dtype", "logdir", "unknown", "pool_layers", "seed", "- x", "? k"]))
        value = draw(st.one_of(VALUES, st.sampled_from(["[16, 16]", "{0: 0.1}", "!!python/object:os.system",
                                                        "&a [*a]", "null", "~", "[]", "{}", "'x", "*b"])))
        lines.append("{}: {}".format(key, value))
    return draw(mutated(st.just("\n".join(lines).encode("utf-8", "surrogatepass"))))


def check_flags_yaml(data, tmp):
    from spherical_cnn import params, training
    run = os.path.join(tmp, "run")
    os.makedirs(run, exist_ok=True)
    path = _write(run, "flags.yaml", data)
    return run_parser(lambda: training.load_flags(run, {"test_only": True}),
                      (params.ParamsError, FileNotFoundError), path)


# ---------------------------------------------------------------------------- TFRecords


def _records_file(n, res, fname, extra):
    import numpy as np
    from spherical_cnn.data import records
    buf = io.BytesIO()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "fuzz-seed-{}.tfrecord".format(os.getpid()))
    recs = [records.encode_example(np.full((res, res, 1), i + 1, np.complex64), i % 3,
                                   fname=fname if fname else None, idrot=0) for i in range(n)]
    if extra:
        recs.append(extra)
    records.write_records(path, recs)
    with open(path, "rb") as f:
        buf.write(f.read())
    os.remove(path)
    return buf.getvalue()


@st.composite
def tfrecord(draw):
    n = draw(st.integers(0, 3))
    res = draw(st.sampled_from([2, 2, 2, 3]))
    extra = draw(st.sampled_from([None, None, b"", b"\x0a\x00", b"not a proto"]))
    return draw(mutated(st.just(_records_file(n, res, draw(st.sampled_from(["", "m.off", "\xff"])), extra))))


def check_tfrecord(data, tmp):
    from spherical_cnn.data import verify
    from spherical_cnn.errors import DataError
    path = _write(tmp, "train_000.tfrecord", data)
    spec = verify.RecordSpec(res=2, nchannels=1, dtype="complex64", n_classes=3)
    return run_parser(lambda: verify.verify_file(path, spec), DataError, path)


# ---------------------------------------------------------------------------- .deb (ar + tar)


def _deb_bytes(members, compression):
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compression) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("data.tar" + ({"": ""}.get(compression, "." + compression)), body)):
        out += "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n".format(name, 0, 0, 0, "100644", len(data)).encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return out


@st.composite
def deb(draw):
    members = [("./usr/share/sweethome3d/furniture/a.sh3f", draw(st.binary(max_size=32))),
               ("./usr/share/doc/README", b"doc")]
    comp = draw(st.sampled_from(["", "gz", "xz", "bz2"]))
    return draw(mutated(st.just(_deb_bytes(members, comp))))


def check_deb(data, tmp):
    from spherical_cnn.data import furniture
    path = _write(tmp, "pkg.deb", data)
    work = os.path.join(tmp, "work")
    os.makedirs(work, exist_ok=True)
    return run_parser(lambda: furniture.extract_deb(path, work), (furniture.FurnitureError, UserError), path)


# ---------------------------------------------------------------------------- the table

TARGETS = {
    "off": (off_text().flatmap(lambda b: mutated(st.just(b))), check_mesh(".off")),
    "obj": (obj_text().flatmap(lambda b: mutated(st.just(b))), check_mesh(".obj")),
    "furniture_obj": (obj_text().flatmap(lambda b: mutated(st.just(b))), check_furniture_obj),
    "idx": (idx_bytes(), check_idx),
    "image": (image_bytes(), check_image),
    "catalog": (catalog(), check_catalog),
    "params": (argfile(), check_params),
    "flags_yaml": (flags_yaml(), check_flags_yaml),
    "tfrecord": (tfrecord(), check_tfrecord),
    "deb": (deb(), check_deb),
}
