"""S^2: per-pixel surface normals of rendered scenes, with the S_exp, S_flat and Direct heads.

Data. A scene is one built-in synthetic shape (``--shapes_per_scene`` > 1: several,
shrunk and placed at random in the unit ball) of a random class (``--classes``), each
at a Haar-uniform random SO(3) rotation, rendered orthographically (render.py) into
a ``(size, size)`` image. Train and test scenes draw different meshes. The network
sees the depth (``--input depth``, the default), the Lambert shading (``shade``) or
both, and predicts the unit surface normal of every foreground pixel.

Normal convention (that of the original's S^2 code, so that the sign layout
'normal_yzx' of signs.py applies). The renderer's camera frame has x right, y up and
z towards the camera, and gives the hit face's normal n = (n_x, n_y, n_z) turned
towards the camera (n_z >= 0). The targets use the OpenCV camera frame: x right,
y down, z forward (along the viewing direction), so that a normal facing the camera
has z <= 0; that is (x, -y, -z) of the renderer's frame. They are stored in the
order (y, z, x):

    target = (-n_y, -n_z, n_x)        (:func:`to_original_frame`)

E.g. a plane facing the camera gives (0, -1, 0); a face turned up gives y < 0, one
turned right gives x > 0. The S_exp head classifies the signs of (y, x) (4
classes; sign(0) counts as -1) and decodes z = -|z|.

Arrays of a split (dict): ``inputs`` (n, size, size, channels) float32 in [0, 1]
(channels: shade, depth in that order, as selected), ``targets`` (n, size, size, 3)
float32, unit on the foreground and zero on the background, ``mask`` (n, size, size)
float32, 1 on the foreground (a ray hit a face with a well-defined normal), else 0.
Splits are cached through ``common.load_or_make``.

Model. A small fully convolutional network (two 3x3 conv+BN+ReLU layers at full
resolution, a stride-2 conv and a dilated conv at half resolution for context,
bilinear upsampling, concatenation with the full-resolution features and a last
3x3 conv) gives features ``(batch, size, size, width)``; the head (heads.py) acts on
the last axis, so it is a per-pixel 1x1 head (``--head_hidden``: with a per-pixel
Dense+ReLU layer before each branch). Losses: S_exp 10 * (1 - cos) on |y| +
cross-entropy of the sign class (the original's S^2 setting), S_flat cosine
proximity, Direct smooth-L1; the per-pixel loss is averaged over the foreground
pixels of the batch (runner.fit's ``weights`` = mask).

Metrics over all foreground pixels of the test set (the usual normal-estimation
ones): MedErr and MeanErr (degrees; the median is exact) and the fractions of
pixels with an angular error below 11.25, 22.5 and 30 degrees.
"""
import numpy as np

from ..render import CHANNELS, OrthoRenderer
from ..rotations import quaternion_to_matrix, random_quaternions
from .common import load_or_make

SUMMARY = "S^2: per-pixel surface normals of rendered scenes of synthetic shapes"
SIZE_FLAGS = {
    "image_size": (int, "image side in pixels (even)"),
    "train_scenes": (int, "training scenes"),
    "test_scenes": (int, "test scenes"),
    "width": (int, "channels of the convolutional network"),
}
DEFAULTS = dict(image_size=32, train_scenes=2000, test_scenes=100, width=24, epochs=12,
                batch_size=16, learning_rate=2e-3)
QUICK = dict(image_size=16, train_scenes=32, test_scenes=8, width=8, epochs=2,
             batch_size=16, learning_rate=3e-3)
PRIMARY = "MedErr"
THRESHOLDS_DEG = (11.25, 22.5, 30.0)
METRICS = ("MedErr", "MeanErr") + tuple(f"<{t:g}" for t in THRESHOLDS_DEG)
SIGN_LAYOUT = "normal_yzx"
SPLITS = ("train", "test")
_FORMAT_VERSION = 1
_MODEL_VERSION = "fcn-v2"  # v2: BatchNormalization momentum 0.9


# --- the normal convention ------------------------------------------------------------

def to_original_frame(normals):
    """Renderer-frame normals ``(..., 3)`` (x right, y up, z towards the camera) ->
    the original's layout ``(..., 3)``: OpenCV frame (x right, y down, z forward)
    stored as (y, z, x), i.e. (-n_y, -n_z, n_x)."""
    n = np.asarray(normals)
    return np.stack([-n[..., 1], -n[..., 2], n[..., 0]], axis=-1)


def from_original_frame(yzx):
    """Inverse of :func:`to_original_frame`."""
    t = np.asarray(yzx)
    return np.stack([t[..., 2], -t[..., 0], -t[..., 1]], axis=-1)


# --- scenes ---------------------------------------------------------------------------

def _class_list(classes):
    from spherical_cnn.data import synthetic
    from .rotation_data import select_classes
    return select_classes(synthetic.CLASS_NAMES, classes)


def _random_offset(rng, k):
    """A point drawn uniformly in the ball of radius 1 - 1/sqrt(k) ``(3,)``."""
    d = rng.normal(size=3)
    return (1.0 - 1.0 / np.sqrt(k)) * rng.uniform() ** (1 / 3) * d / np.linalg.norm(d)


def make_scene(rng, shapes_per_scene=1, classes=None):
    """A trimesh in the unit ball: ``shapes_per_scene`` = k synthetic shapes of random
    classes (from ``classes``, None: all), each at a uniform random rotation; with
    k > 1 each is shrunk by 1/sqrt(k) and moved to a random point (shapes may
    intersect), and the scene is rescaled into the unit ball if needed."""
    import trimesh
    from spherical_cnn.data import synthetic
    names = _class_list(classes)
    k = int(shapes_per_scene)
    parts = []
    for _ in range(k):
        mesh = synthetic.make_mesh(names[rng.integers(len(names))], int(rng.integers(2 ** 31)))
        v = mesh.vertices @ quaternion_to_matrix(random_quaternions(1, rng))[0].T
        if k > 1:
            v = v / np.sqrt(k) + _random_offset(rng, k)
        parts.append(trimesh.Trimesh(vertices=v, faces=mesh.faces, process=False))
    scene = parts[0] if k == 1 else trimesh.util.concatenate(parts)
    radius = np.linalg.norm(scene.vertices, axis=1).max()
    if radius > 1.0:
        scene = trimesh.Trimesh(vertices=scene.vertices / (radius * (1 + 1e-9)),
                                faces=scene.faces, process=False)
    return scene


def render_scene(mesh, size, input_channels="depth"):
    """``(image (size, size, c), targets (size, size, 3), mask (size, size))`` of a scene
    seen from the camera (identity rotation); targets in the original's (y, z, x)
    layout, zero where the mask is 0 (background, or a degenerate face)."""
    full = OrthoRenderer(mesh, size=size, channels=input_channels).render_full(np.eye(3))
    n = full["normals"]
    mask = full["mask"] * (np.linalg.norm(n, axis=-1) > 0.5)
    targets = to_original_frame(n) * mask[..., None]
    return full["image"], targets.astype(np.float32), mask.astype(np.float32)


def render_split(split, n_scenes, size=32, input_channels="depth", shapes_per_scene=1,
                 classes=None, seed=0):
    """The arrays of one split (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if input_channels not in CHANNELS:
        raise ValueError(f"input must be one of {sorted(CHANNELS)}, got {input_channels!r}")
    rng = np.random.default_rng([int(seed), SPLITS.index(split), 4099])
    c = len(CHANNELS[input_channels])
    inputs = np.zeros((n_scenes, size, size, c), np.float32)
    targets = np.zeros((n_scenes, size, size, 3), np.float32)
    mask = np.zeros((n_scenes, size, size), np.float32)
    for i in range(n_scenes):
        scene = make_scene(rng, shapes_per_scene, classes)
        inputs[i], targets[i], mask[i] = render_scene(scene, size, input_channels)
    return dict(inputs=inputs, targets=targets, mask=mask)


def dataset_manifest(split, n_scenes, size, input_channels, shapes_per_scene, classes, seed):
    """The settings that determine a split (what the cache key hashes)."""
    return dict(task="normals", format_version=_FORMAT_VERSION, split=split,
                scenes=int(n_scenes), image_size=int(size), input=input_channels,
                shapes_per_scene=int(shapes_per_scene),
                classes=None if classes is None else sorted(_class_list(classes)),
                seed=int(seed), renderer="orthographic ray casting, camera on +z (render.py)",
                normals="OpenCV camera frame (x right, y down, z forward) as (y, z, x)")


def load_or_render(split, n_scenes, cache_dir=None, size=32, input_channels="depth",
                   shapes_per_scene=1, classes=None, seed=0, verbose=False):
    """:func:`render_split` through the npz cache in ``cache_dir`` (None: no cache)."""
    manifest = dataset_manifest(split, n_scenes, size, input_channels, shapes_per_scene,
                                classes, seed)
    return load_or_make(f"normals_{split}", manifest,
                        lambda: render_split(split, n_scenes, size, input_channels,
                                             shapes_per_scene, classes, seed),
                        cache_dir, verbose)


# --- the task-module protocol (spherical_cnn.cli.regression) ----------------------------

def add_arguments(parser):
    parser.add_argument("--input", default="depth", choices=sorted(CHANNELS),
                        help="what the network sees: depth, shade or both")
    parser.add_argument("--shapes_per_scene", type=int, default=1,
                        help="synthetic shapes per scene")
    parser.add_argument("--classes", default=None,
                        help="comma-separated synthetic classes to draw from (default all)")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the scenes")
    parser.add_argument("--head_hidden", type=int, default=0,
                        help="units of a per-pixel Dense+ReLU layer before each head branch "
                             "(0: none; the original has one per branch)")


def check_args(parser, args):
    if args.image_size < 4 or args.image_size % 2:
        parser.error(f"--image_size must be even and >= 4, got {args.image_size}")
    if args.head_hidden < 0:
        parser.error(f"--head_hidden must be >= 0, got {args.head_hidden}")
    if args.shapes_per_scene < 1:
        parser.error(f"--shapes_per_scene must be >= 1, got {args.shapes_per_scene}")
    if args.classes is not None:
        args.classes = ",".join(c.strip() for c in args.classes.split(",") if c.strip())
        try:
            _class_list(args.classes)
        except ValueError as e:
            parser.error(str(e))


def _split(args, split, n):
    data = load_or_render(split, n, args.data_dir, args.image_size, args.input,
                          args.shapes_per_scene, args.classes, args.data_seed, verbose=True)
    return dict(inputs=(data["inputs"],), targets=data["targets"], weights=data["mask"])


def load_data(args):
    return _split(args, "train", args.train_scenes), _split(args, "test", args.test_scenes)


def describe_data(train, test):
    size = train["inputs"][0].shape[1:]
    return (f"{len(train['targets'])} train / {len(test['targets'])} test scenes of "
            f"{size[0]}x{size[1]}x{size[2]}, foreground {int(train['weights'].sum())} / "
            f"{int(test['weights'].sum())} pixels")


def config(args):
    return dict(task="normals", model=_MODEL_VERSION, image_size=args.image_size,
                train_scenes=args.train_scenes, test_scenes=args.test_scenes,
                width=args.width, head_hidden=args.head_hidden, input=args.input,
                shapes_per_scene=args.shapes_per_scene,
                classes=args.classes, data_seed=args.data_seed, sign_layout=SIGN_LAYOUT,
                sexp_loss="10 * abs cosine + sign CE")
