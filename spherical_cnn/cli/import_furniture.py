"""Real meshes: Sweet Home 3D's furniture (Debian package sweethome3d-furniture) -> a mesh tree.

  spherical-cnn-import-furniture --out data/furniture             # apt-get download into a temp dir
  spherical-cnn-import-furniture sweethome3d-furniture_1.8-1_all.deb --out data/furniture
  spherical-cnn-import-furniture /usr/share/sweethome3d/furniture --out data/furniture
  spherical-cnn-make-dataset data/furniture --out data/furniture-32 --input_res 32
  spherical-cnn-rotation-study --mesh_root data/furniture --out studies/furniture-32

SOURCE is the package's .deb, a folder holding its .sh3f archives (the
extracted package or the installed path) or one .sh3f archive. Without SOURCE
the installed package is used when present, otherwise `apt-get download
sweethome3d-furniture` fetches the .deb into a temporary folder (no root needed).

The output is a ModelNet-style tree <class>/{train,test}/<mesh>.off that
make_dataset and rotation_study --mesh_root read, with LICENSES.csv (licence and
creator of every mesh), LEFT_OUT.csv (every item not written and why),
licenses/<archive>.txt and furniture.json beside the classes. Classes come from
the item names through the mapping table of spherical_cnn/data/furniture.py
(CLASS_RULES, EXCLUDE); each model is turned upright with its catalog
modelRotation and from y-up to z-up (x = width, y = depth, z = height),
identical geometries are written once, and the train/test split is a
deterministic hash of (seed, archive, model path).

The tree is written in a hidden folder beside --out and renamed into place when
complete: an error or Ctrl-C leaves --out as it was. A model whose OBJ cannot be
read is skipped and named, the rest goes on (exit status 1 then); a corrupt
archive or package, a missing package manager or an unknown package stops with a
one-line error (exit status 2).
"""
from . import common

# Defaults of spherical_cnn.data.furniture (written out so that --help imports nothing heavy).
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_MIN_PER_CLASS = 15


def build_parser():
    p = common.output_folder_parser(
        __doc__, "source", "the sweethome3d-furniture .deb, a folder with its .sh3f archives, or one .sh3f "
                           "(default: the installed package, else apt-get download)",
        "output folder of the mesh tree")
    p.add_argument("--test_fraction", type=float, default=DEFAULT_TEST_FRACTION,
                   help="fraction of each class's meshes in the test split")
    p.add_argument("--min_per_class", type=int, default=DEFAULT_MIN_PER_CLASS,
                   help="classes with fewer distinct meshes are left out")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    return common.add_output_flags(common.add_overwrite_flag(p, "the tree"))


def main(argv=None):
    """Write the tree; exit status 0, or 1 when some models were skipped (unreadable OBJ)."""
    args = build_parser().parse_args(argv)
    from ..data import furniture
    command = common.command_line("import_furniture", argv)
    summary = furniture.convert(args.out, args.source, test_fraction=args.test_fraction,
                                min_per_class=args.min_per_class, seed=args.seed,
                                overwrite=args.overwrite, progress=True, command=command)
    furniture.print_summary(summary, args.out)
    return 1 if summary["skipped"] else 0
