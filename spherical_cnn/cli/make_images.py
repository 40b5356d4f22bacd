"""Project an MNIST-format image set (Fashion-MNIST, MNIST, ...) onto the sphere and write
TFRecords for training (the spherical MNIST protocol).

  spherical-cnn-make-images --out data/fmnist-32                 # apt-get download dataset-fashion-mnist
  spherical-cnn-make-images dataset-fashion-mnist_*.deb --out data/fmnist-32
  spherical-cnn-make-images /usr/share/datasets/fashion-mnist --out data/fmnist-32-R --rotation R
  spherical-cnn-make-images --train_images train-images-idx3-ubyte.gz --train_labels ... \\
      --test_images ... --test_labels ... --out data/mnist-60 --input_res 60 --classes 0,1,2,3,4,5,6,7,8,9

SOURCE is the dataset's .deb, or a folder holding its four IDX files
({train,t10k}-{images-idx3,labels-idx1}-ubyte, gzip or not; searched
recursively, e.g. an extracted package or /usr/share/datasets/fashion-mnist);
without SOURCE nor IDX paths, `apt-get download dataset-fashion-mnist` fetches it
(no root needed). Then train on it:

  spherical-cnn-train @params/model-32.txt @params/fmnist-32.txt @params/training-cpu.txt \\
      --dset_dir data/fmnist-32 --logdir logs/fmnist-32

Protocol (spherical_cnn/data/images.py): the sphere sits on the image plane,
each grid point is projected onto it from just above the north pole
(stereographic), the image spans [-1.5, 1.5]^2 and is sampled bilinearly; the
northern hemisphere is 0. --rotation R rotates every map by its own uniformly
random rotation (NR: none). The literature uses bandwidth 30 (--input_res 60);
the default 32 is the grid of params/model-32.txt. Records: x float32
(res, res, 2) = image and its support, y the label, fname = <train|test>/<index>,
idrot, rotation. Train = the first --n_train train images, val = the next --n_val,
test = the first --n_test test images. The folder appears only when complete.
"""
from . import common


def build_parser():
    p = common.output_folder_parser(
        __doc__, "source", "the dataset's .deb or a folder holding its IDX files (default: apt-get download "
                           "dataset-fashion-mnist)",
        "output folder for the records")
    p.add_argument("--rotation", choices=("NR", "R"), default="NR",
                   help="NR: not rotated; R: one uniformly random rotation per image (and rotation index)")
    p.add_argument("--input_res", type=int, default=32,
                   help="grid size n (n x n Driscoll-Healy grid; the literature's bandwidth 30 is 60)")
    p.add_argument("--n_train", type=int, default=None,
                   help="train images: the first N of the train file (default: all but --n_val)")
    p.add_argument("--n_val", type=int, default=1000, help="validation images, the next ones of the train file")
    p.add_argument("--n_test", type=int, default=None, help="test images: the first N (default: all)")
    p.add_argument("--n_rotations", type=int, default=1,
                   help="rotations per train image = train shards (R; one shard per epoch)")
    p.add_argument("--n_test_rotations", type=int, default=1, help="rotations per val/test image")
    p.add_argument("--band_limit", type=int, default=0, metavar="K",
                   help="project on the K-times finer grid and keep the spherical harmonic degrees "
                        "< input_res/2 (maps exactly band-limited, so that rotating them is exact; with "
                        "--rotation R each map is the unrotated one rotated exactly); "
                        "0: sample the projection on the grid, the protocol's way")
    p.add_argument("--seed", type=int, default=0, help="seed of the rotations")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names (default: Fashion-MNIST's for its files, else the labels)")
    for role in ("train_images", "train_labels", "test_images", "test_labels"):
        p.add_argument("--" + role, default=None, metavar="FILE", help="IDX file (overrides SOURCE's)")
    return common.add_output_flags(common.add_overwrite_flag(p, "the dataset"))


def main(argv=None):
    """Build the dataset; errors reach run_cli as one line."""
    args = build_parser().parse_args(argv)
    from ..data.atomic_output import check_destination
    check_destination(args.out, args.overwrite)  # before TensorFlow loads (and any download)
    common.quiet_tensorflow(args.verbose)
    from ..data import images
    explicit = {r: getattr(args, r) for r in images.ROLES}
    if any(explicit.values()) and not all(explicit.values()) and args.source is None:
        missing = ", ".join("--" + r for r, v in explicit.items() if not v)
        raise ValueError("give all four IDX files or a SOURCE to take the others from (missing {})".format(missing))
    command = common.command_line("make_images", argv)
    images.build_from_source(
        args.source, args.out, explicit=explicit, rotation=args.rotation, input_res=args.input_res,
        n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, n_rotations=args.n_rotations,
        n_test_rotations=args.n_test_rotations, seed=args.seed, classes=args.classes,
        band_limit=args.band_limit, overwrite=args.overwrite, progress=True,
        extra_manifest={"args": vars(args), "command": command})
    return 0
