"""Combine finished training runs into one model that averages their class probabilities.

    spherical-cnn-ensemble logs/furniture-s0 logs/furniture-s1 logs/furniture-s2 --out logs/furniture-ens
    spherical-cnn-ensemble logs/furniture-s* --out logs/furniture-ens --records data/furniture-32-so3/test_000.tfrecord
    spherical-cnn-predict --logdir logs/furniture-ens --records data/furniture-32-so3/test_000.tfrecord

The runs must read the same inputs (resolution, channels, dtype, --mag_ang,
--real_inputs, classes; see spherical_cnn/ensemble.py): typically one recipe
trained with several --seed values. --out is a run folder like any other
(model.keras, flags.yaml, classes.txt, and ensemble.json naming the members):
spherical-cnn-predict --logdir, spherical-cnn-retrieval and
tools/ship_pretrained.py read it. The output 'logits' are the log of the mean
probability; 'descriptor' is the members' descriptors, concatenated. With
--records (labelled records in the training data's format) the accuracy of
every member and of the ensemble on them is printed as a table.
"""
from . import common


def build_parser():
    p = common.command_parser(__doc__)
    p.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="finished training runs (with model.keras)")
    p.add_argument("--out", required=True, help="run folder to write the ensemble to")
    common.add_overwrite_flag(p, "the run folder")
    p.add_argument("--records", nargs="+", metavar="FILE", default=None,
                   help="labelled TFRecord files: print each member's and the ensemble's accuracy on them")
    p.add_argument("--batch", type=int, default=64, help="records per forward pass with --records")
    return common.add_output_flags(p)


def main(argv=None):
    import sys
    a = build_parser().parse_args(argv)
    common.quiet_tensorflow(a.verbose)
    from ..ensemble import write_ensemble
    command = common.command_line("spherical-cnn-ensemble", argv)
    model = write_ensemble(a.logdirs, a.out, overwrite=a.overwrite, command=command,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    print("ensemble of {} runs written to {} ({:,} parameters)".format(len(a.logdirs), a.out,
                                                                      model.count_params()))
    if a.records:
        print_accuracies(model, a.logdirs, a.out, a.records, a.batch)
    return 0


def print_accuracies(model, logdirs, out_dir, paths, batch):
    """The table of each member's and the ensemble's accuracy on the labelled ``paths``
    (records that cannot be read stop the command: a partial figure would mislead)."""
    import numpy as np
    from ..datasets import to_model_input
    from ..errors import UserError
    from ..training import load_flags
    from .predict import batch_logits, record_rows

    def refuse(message):
        raise UserError(message)
    args = load_flags(out_dir, {"test_only": True, "from_scratch": False})
    rows = record_rows(paths, args, refuse)
    if not rows or any(r["y"] is None for r in rows):
        raise UserError("--records: {} holds no labelled records".format(" ".join(paths)))
    x = np.asarray(to_model_input(np.stack([r["x"] for r in rows]), args.mag_ang))
    y = np.asarray([r["y"] for r in rows])

    def accuracy(m):
        return float(np.mean(batch_logits(m, x, batch).argmax(axis=1) == y))
    print("|model|accuracy|records|")
    print("|---|---:|---:|")
    for i, logdir in enumerate(logdirs):
        print("|member {} ({})|{:.4f}|{}|".format(i, logdir, accuracy(model.get_layer("member_{}".format(i))),
                                                len(y)))
    print("|ensemble|{:.4f}|{}|".format(accuracy(model), len(y)))
