"""Render meshes to spherical maps and write a TFRecord dataset for training.

  spherical-cnn-make-dataset MESH_ROOT --out DIR --input_res 64 --rotations so3 --n_rotations 8
  spherical-cnn-make-dataset --synthetic --out data/synthetic-32 --input_res 32
  spherical-cnn-make-dataset --synthetic examples/meshes --out data/synthetic-32 --input_res 32
  spherical-cnn-make-dataset MESH_ROOT --out DIR --augment original     # 48 augmented instances/mesh

MESH_ROOT is a ModelNet-style tree <class>/{train,test}/<mesh> (.off/.obj/.stl/.ply).
With --synthetic the built-in procedural shapes are used instead; MESH_ROOT, if
given, receives their .off files (meshes to try with spherical-cnn-predict).
See spherical_cnn/data/builder.py for the output layout.

Augmentation (train and val only; test meshes are only rotated): --aniso_scale
LO,HI scales each instance by per-axis factors drawn from [LO, HI] in the
mesh's frame, then rescales it into the unit ball again; --center_shift MAX
moves the centre of the ray sphere by a random vector of norm <= MAX (rays aim
at that centre). Order: scale, rotate, shift. Records store `scale`, `rotation`
and `center`, manifest.json the ranges (spherical_cnn/data/augment.py). Both are
off by default, so datasets built without them are unchanged.

Anti-aliasing: --supersample S casts S x S rays spread over each grid cell and
stores their average (distance averaged over the cell with misses as 0, angle
averaged over the rays that hit; spherical_cnn/data/raycast.py); rendering costs
about S^2 times as much. Default 1: one ray per grid point, as before.

Convex hull: --convex_hull adds a second channel, the map of each mesh's convex
hull cast with the same rays (the input of the authors' ModelNet40 models);
train on it with --nchannels 2 (with --mag_ang: 4 real channels, the two
distances, then the two sines). Rendering costs about twice as much.
"""
from . import common

# Defaults of spherical_cnn.data (test_cli checks they agree), written out so
# that --help does not import trimesh.
ROTATION_MODES = ("so3", "z", "none")
DEFAULT_R0 = 1.2
DEFAULT_TRAIN_PER_CLASS = 60
DEFAULT_TEST_PER_CLASS = 15
DEFAULT_N_ROTATIONS = 8
AUGMENT_PRESETS = ("none", "original")


def build_parser():
    p = common.output_folder_parser(
        __doc__, "mesh_root", "ModelNet-style mesh tree (with --synthetic: where to write the meshes, optional)",
        "output folder for the records")
    p.add_argument("--synthetic", action="store_true", help="use the built-in synthetic shapes")
    p.add_argument("--input_res", type=int, default=64, help="grid size n of the n x n maps (32, 64, 128)")
    p.add_argument("--rotations", choices=ROTATION_MODES, default=None,
                   help="train (and val) rotations (default so3)")
    p.add_argument("--n_rotations", type=int, default=None,
                   help="instances per train mesh = number of train shards (default {})".format(
                       DEFAULT_N_ROTATIONS))
    p.add_argument("--test_rotations", choices=ROTATION_MODES, default=None,
                   help="test rotations (default: --rotations)")
    p.add_argument("--n_test_rotations", type=int, default=4, help="rotations per val/test mesh")
    p.add_argument("--val_fraction", type=float, default=0.1,
                   help="fraction of train meshes held out for validation")
    p.add_argument("--seed", type=int, default=0, help="random seed (rotations, split, synthetic shapes)")
    p.add_argument("--r0", type=float, default=DEFAULT_R0, help="radius the rays start from (> 1)")
    p.add_argument("--supersample", type=int, default=1, metavar="S",
                   help="anti-aliasing: S x S rays per grid cell, averaged (distance over the whole cell, misses "
                        "counting as 0; angle over the rays that hit); costs about S^2 times one ray")
    p.add_argument("--convex_hull", action="store_true",
                   help="add a second channel: the map of each mesh's convex hull, cast with the same rays "
                        "(train with --nchannels 2)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    common.add_overwrite_flag(p, "the dataset")
    p.add_argument("--ignore_size_check", action="store_true",
                   help="build even when the memory estimate (per mesh x workers) exceeds the memory "
                        "available")
    p.add_argument("--n_train_per_class", type=int, default=DEFAULT_TRAIN_PER_CLASS,
                   help="train meshes per class (--synthetic)")
    p.add_argument("--n_test_per_class", type=int, default=DEFAULT_TEST_PER_CLASS,
                   help="test meshes per class (--synthetic)")
    p.add_argument("--aniso_scale", default=None, metavar="LO,HI",
                   help="anisotropic scaling of train/val instances: per-axis factors uniform in [LO, HI] "
                        "applied in the mesh frame before the rotation, then the mesh is rescaled into the "
                        "unit ball again (default: off)")
    p.add_argument("--center_shift", type=float, default=None, metavar="MAX",
                   help="shifted sphere centre for train/val instances: the rays start around, and aim at, "
                        "a centre drawn uniformly in the ball of radius MAX < r0 - 1 (default: 0 = off)")
    p.add_argument("--augment", choices=AUGMENT_PRESETS, default="none",
                   help="preset; 'original' = the authors' kind of training set: --rotations so3 "
                        "--n_rotations 48 --aniso_scale 0.8,1.2 --center_shift 0.1 (the two ranges are our "
                        "estimate: the authors never published theirs); flags given explicitly win")
    return common.add_output_flags(p)


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not args.synthetic and not args.mesh_root:
        p.error("give MESH_ROOT, or --synthetic for the built-in shapes")
    from ..data import augment
    preset = augment.PRESETS[args.augment]
    defaults = {"rotations": "so3", "n_rotations": DEFAULT_N_ROTATIONS, "aniso_scale": None,
                "center_shift": 0.0}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, preset.get(name, default))
    if isinstance(args.aniso_scale, str):
        try:
            args.aniso_scale = augment.parse_range(args.aniso_scale, "--aniso_scale")
        except ValueError as e:
            p.error(str(e))
    if args.aniso_scale is not None:
        args.aniso_scale = list(args.aniso_scale)
    return args


def main(argv=None):
    """Build the dataset; errors (existing --out, bad meshes) reach run_cli as one line."""
    args = parse_args(argv)
    common.quiet_tensorflow(args.verbose)
    from ..data import builder
    common_kw = dict(input_res=args.input_res, rotations_mode=args.rotations, n_rotations=args.n_rotations,
                     test_rotations=args.test_rotations, n_test_rotations=args.n_test_rotations,
                     val_fraction=args.val_fraction, r0=args.r0, workers=args.workers,
                     overwrite=args.overwrite, progress=True, aniso_scale=args.aniso_scale,
                     center_shift=args.center_shift, augment_preset=args.augment,
                     supersample=args.supersample, convex_hull=args.convex_hull,
                     ignore_size_check=args.ignore_size_check)
    command = common.command_line("make_dataset", argv)
    common_kw["extra_manifest"] = {"args": vars(args), "command": command}
    if args.synthetic:
        builder.build_synthetic(args.out, n_train_per_class=args.n_train_per_class,
                                n_test_per_class=args.n_test_per_class, seed=args.seed,
                                mesh_dir=args.mesh_root, **common_kw)
    else:
        builder.build_from_tree(args.mesh_root, args.out, seed=args.seed, **common_kw)
    return 0
