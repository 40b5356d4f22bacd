"""Command-line flags of the training script.

Every flag of the original demo exists here with the same long name, short
form and default, so that its params files (``@params/model-64.txt`` ...) and
commands work unchanged. Differences from the original:

- ``--learning_rate`` is parsed with ``yaml.safe_load`` (PyYAML >= 6 refuses a
  bare ``yaml.load``) and validated to be a mapping ``{epoch: value}``.
- Bad combinations raise :class:`ParamsError` with a message naming the flags
  instead of a bare ``assert``.
- New flags: ``--seed``, ``--no_shuffle``, ``--distribute``, ``--xla``, ``--mixed_precision``, ``--export``,
  ``--progress``, ``--tensorboard_histograms``, ``--nonlinearity_upsample``; and the
  dataset loader ``synthetic`` (the built-in dataset, generated on first use).
"""
import argparse
import os

import yaml

from ._arguments import ARGFILE_HELP, ArgumentParser, HelpFormatter, epilog
from .errors import UserError

MODELS_HELP = "model name; a builder registered in spherical_cnn.models.MODELS"

# The demo's params files, installed with the package; ``params/`` at the
# repository root is a symbolic link to this folder (one copy).
PARAMS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "params_files")


class ParamsError(UserError, ValueError):
    """A flag (or combination of flags) has an invalid value."""


def _int_list(text):
    try:
        return [int(v) for v in str(text).split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a comma-separated list of integers, got {!r}".format(text))


def _learning_rate(text):
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(
            "--learning_rate must be a YAML mapping like '{{0: 0.001, 32: 0.0002}}': {}".format(
                " ".join(str(err).split())))
    if isinstance(value, (int, float)):
        value = {0: float(value)}
    if not isinstance(value, dict) or not value:
        raise argparse.ArgumentTypeError(
            "--learning_rate must be a YAML mapping epoch -> value, got {!r}".format(text))
    try:
        return {int(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            "--learning_rate keys must be epochs (int) and values numbers, got {!r}".format(text))


def build_parser():
    """The argument parser (``@file`` arguments read one token per line)."""
    p = ArgumentParser(
        description="Train and test a spherical CNN.", fromfile_prefix_chars="@",
        formatter_class=HelpFormatter,
        epilog=epilog(ARGFILE_HELP, "The demo's params files (params/*.txt in the repository) "
                      "are installed with the package: `spherical-cnn-params --list` lists them, "
                      "`spherical-cnn-params NAME` prints the path of one, e.g. "
                      "@$(spherical-cnn-params model-64)."))
    p.add_argument("--model", "-m", type=str, default="", help=MODELS_HELP)
    p.add_argument("--logdir", "-ld", type=str, default="",
                   help="directory for checkpoints, logs, TensorBoard events and the exported model")
    p.add_argument("--run_id", "-id", type=str, default="",
                   help="name of this run in the final table (default: last part of --logdir)")
    p.add_argument("--test_only", "-to", action="store_true", default=False,
                   help="reload the flags saved in --logdir and only test the final model")
    p.add_argument("--fallback_to_best", action="store_true", default=False,
                   help="with --test_only: if the 'final' checkpoint is missing or damaged, test "
                        "'best' instead (said in the log); without it such a run is an error")

    # dataset
    p.add_argument("--dset", "-d", type=str, default="",
                   help="dataset loader: from_cached_tfrecords or synthetic (built-in, made on first use)")
    p.add_argument("--dset_dir", "-dd", type=str, default=os.path.expanduser("~/bigdata"),
                   help="directory with train*/val*/test*.tfrecord files")
    p.add_argument("--n_classes", "-nc", type=int, default=10, help="number of classes")
    p.add_argument("--dtype", "-dt", type=str, default="float32",
                   help="dtype of the raw `x` arrays in the records (e.g. complex64, float32)")
    p.add_argument("--spectral_input", action="store_true", default=False,
                   help="inputs are spherical harmonic coefficients instead of grid values")
    p.add_argument("--mag_ang", action="store_true", default=False,
                   help="turn each complex channel into [magnitude, sine of the phase]")
    p.add_argument("--first_n", "-fn", type=int, default=None,
                   help="use only the first n batches of each training epoch and of validation")
    p.add_argument("--test_n", "-tn", type=int, default=0,
                   help="use only the first n test batches (0: all)")
    p.add_argument("--input_res", "-res", type=int, default=32,
                   help="grid resolution n of the n x n spherical inputs")
    p.add_argument("--skip_val", "-sv", action="store_true", default=False,
                   help="skip validation ('valid' then reports train accuracy)")

    # training
    p.add_argument("--optimizer", "-o", type=str, default="adam", choices=["adam", "momentum"],
                   help="adam, or momentum (Nesterov, 0.9)")
    p.add_argument("--learning_rate", "-lr", type=_learning_rate, default={0: 1e-3},
                   help="learning rate schedule as a YAML mapping {epoch: value}")
    p.add_argument("--regularization_weight", "-reg", type=float, default=0,
                   help="weight of the L2 regularization of the convolution filters")
    p.add_argument("--label_smoothing", type=float, default=0, metavar="E",
                   help="train on targets 1 - E on the label + E / n_classes on every class "
                        "(both classifiers' losses); 0: one-hot targets, as the original")
    p.add_argument("--n_epochs", "-ne", type=int, default=10, help="number of training epochs")
    p.add_argument("--from_scratch", "-fs", action="store_true", default=False,
                   help="discard checkpoints and events in --logdir and start over")
    p.add_argument("--train_bsize", "-bs", type=int, default=128,
                   help="batch size (train, validation and test)")
    p.add_argument("--recompute_bn", type=int, default=0, metavar="N",
                   help="after each epoch, before validating and saving, set the batch norms' "
                        "moving statistics to those of N training batches under the epoch's final "
                        "weights (precise batch norm); 0 keeps the running averages, as the original")

    # model
    p.add_argument("--nchannels", default=1, type=int, help="number of channels stored in the records")
    p.add_argument("--nfilters", default=[16, 16, 32, 32, 64, 64], type=_int_list,
                   help="filters per layer (comma list)")
    p.add_argument("--pool_layers", default=[0, 1, 0, 1, 0, 0], type=_int_list,
                   help="pooling levels after each layer (comma list)")
    p.add_argument("--concat_branches", default=[0, 0, 0, 0, 0, 0], type=_int_list,
                   help="layers where branch 0 also receives branch 1's features (comma list)")
    p.add_argument("--dropout", "-do", action="store_true", default=False, help="use dropout (0.5)")
    p.add_argument("--batch_norm", "-bn", action="store_true", default=False, help="batch normalization")
    p.add_argument("--batch_renorm", "-brn", action="store_true", default=False,
                   help="batch renormalization (with --batch_norm)")
    p.add_argument("--nonlin", "-nl", type=str, default="prelu",
                   help="nonlinearity: prelu, identity, or any keras activation name")
    p.add_argument("--spectral_pool", "-sp", action="store_true", default=False,
                   help="pool in the spectral domain instead of on the grid")
    p.add_argument("--pool", "-p", choices=["wap", "cwap", "max", "avg"], default="wap",
                   help="grid pooling: area-weighted average (wap, as the original), grid-centred "
                        "area-weighted average (cwap, ours: keeps SO(3) equivariance), max or average")
    p.add_argument("--n_filter_params", "-nfp", type=int, default=0,
                   help="spectral filter parameters per degree range (0: one per degree)")
    p.add_argument("--weighted_sph_avg", "-wsa", action="store_true", default=False,
                   help="weight the final feature maps by the cell area before pooling")
    p.add_argument("--final_pool", "-fp", choices=["gap", "max", "magnitudes", "all"], default="gap",
                   help="final pooling")
    p.add_argument("--extra_loss", "-el", action="store_true", default=False,
                   help="extra classifier and loss on the second branch")
    p.add_argument("--triplet_loss", "-tl", action="store_true", default=False,
                   help="add a semi-hard triplet loss on the descriptors")
    p.add_argument("--round_batches", "-rb", action="store_true", default=False,
                   help="drop the incomplete last training batch (needed by --triplet_loss)")
    p.add_argument("--no_final_fc", "-nofc", action="store_true", default=False,
                   help="no fully connected layer before the classifier")
    p.add_argument("--transform_method", "-tm", choices=["naive", "sep"], default="naive",
                   help="spherical harmonic transform: naive (dense) or sep (separation of variables)")
    p.add_argument("--real_inputs", "-ri", action="store_true", default=False,
                   help="use the m >= 0 half of the coefficients (inputs are real)")

    # ours
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, shuffling)")
    p.add_argument("--nonlinearity_upsample", type=int, default=1,
                   help="apply the convolution blocks' nonlinearity on a grid this many times finer "
                        "and band-limit back (anti-aliased, more equivariant, slower); 1: on the grid")
    p.add_argument("--no_shuffle", action="store_true", default=False,
                   help="train on each shard in file order, as the original (default: shuffled)")
    p.add_argument("--deterministic", action="store_true", default=False,
                   help="deterministic TensorFlow kernels (tf.config.experimental.enable_op_determinism), "
                        "for bit-exact reruns and resumes where the default kernels are not (GPUs); "
                        "on a CPU the default kernels already are")
    p.add_argument("--distribute", choices=["none", "mirrored", "multi_worker"], default="none",
                   help="tf.distribute strategy: several GPUs (mirrored) or machines (multi_worker, TF_CONFIG)")
    p.add_argument("--no_export", dest="export", action="store_false", default=True,
                   help="do not export the final model as logdir/model.keras")
    p.add_argument("--xla", action="store_true", default=False,
                   help="compile the training and evaluation steps with XLA (jit_compile)")
    p.add_argument("--mixed_precision", nargs="?", const="auto", default=None,
                   choices=["auto", "bfloat16", "float16"],
                   help="compute in reduced precision (Keras policy mixed_bfloat16 / mixed_float16; "
                        "variables, batch-norm statistics and losses stay float32); auto: float16 "
                        "on a GPU, bfloat16 on a CPU with native bfloat16 (AVX-512 BF16 / AMX), "
                        "float32 elsewhere. Off by default (the original's numerics)")
    p.add_argument("--progress", choices=["auto", "bar", "none"], default="auto",
                   help="per-epoch progress bar (auto: only on a terminal)")
    p.add_argument("--tensorboard_histograms", type=int, default=1,
                   help="write weight/activation histograms every N epochs (0: never)")
    p.add_argument("--ignore_size_check", action="store_true", default=False,
                   help="train even when the memory estimate (harmonic tables + one batch, from "
                        "--input_res, --train_bsize, the filters) exceeds the memory available")
    p.add_argument("--debug", action="store_true", default=False,
                   help="show full tracebacks for errors (also: SPHERICAL_CNN_DEBUG=1)")
    p.add_argument("--verbose", action="store_true", default=False,
                   help="show TensorFlow's log lines (CUDA, oneDNN, absl), hidden by default")
    return p


def parse(args=None):
    """Parse flags from a token list, a dict of values, or ``sys.argv``.

    Args:
        args: ``None`` (command line), a list of tokens (``['@params/x.txt', '--n_epochs', '2']``)
            or a dict of flag values applied over the defaults (used to reload saved flags).

    Returns:
        argparse.Namespace, checked with :func:`check`.
    """
    parser = build_parser()
    if isinstance(args, dict):
        out = parser.parse_args([])
        known = vars(out)
        actions = {a.dest: a for a in parser._actions}
        for key, value in args.items():
            if key not in known:
                raise ParamsError("unknown flag {!r} in saved flags".format(key))
            setattr(out, key, _checked_value(key, value, actions[key]))
    else:
        out = parser.parse_args(args)

    out.logdir = os.path.expanduser(out.logdir)
    out.dset_dir = os.path.expanduser(out.dset_dir)
    if not out.run_id:
        out.run_id = os.path.basename(os.path.normpath(out.logdir)) if out.logdir else "run"
    check(out)
    return out


def _checked_value(key, value, action):
    """``value`` of a flag given as data (saved flags): of the type the flag takes, else
    a :class:`ParamsError` naming the flag."""
    default = action.default
    kind = type(default)

    def bad():
        return ParamsError("--{}: {!r} is not a valid value (expected {})".format(
            key, value, "a number" if kind is float else kind.__name__ if default is not None
            else "an integer or nothing"))
    if value is None:
        if default is None:
            return None
        raise bad()
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind is dict:  # --learning_rate
        try:
            return _learning_rate(yaml.safe_dump(value) if isinstance(value, dict) else str(value))
        except argparse.ArgumentTypeError:
            raise bad() from None
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                  for v in value):
            raise bad()
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value)
    if kind is int or (default is None and action.type is int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if kind is str and not isinstance(value, str):
        raise bad()
    if action.choices is not None and value not in action.choices:
        raise bad()
    return value


def check(args):
    """Raise :class:`ParamsError` for invalid values or combinations of flags."""
    n_layers = len(args.nfilters)
    if n_layers == 0:
        raise ParamsError("--nfilters is empty")
    if len(args.pool_layers) != n_layers:
        raise ParamsError("--nfilters has {} entries but --pool_layers has {}"
                          .format(n_layers, len(args.pool_layers)))
    if args.model == "two_branch" and len(args.concat_branches) != n_layers:
        raise ParamsError("--nfilters has {} entries but --concat_branches has {}"
                          .format(n_layers, len(args.concat_branches)))
    if any(v < 0 for v in args.pool_layers):
        raise ParamsError("--pool_layers must be non-negative, got {}".format(args.pool_layers))
    n_levels = sum(args.pool_layers)
    if args.input_res <= 0 or args.input_res % (2 ** (n_levels + 1)) != 0:
        raise ParamsError("--input_res {} cannot be pooled {} times (--pool_layers {}): it must be "
                          "a multiple of {}".format(args.input_res, n_levels, args.pool_layers,
                                                    2 ** (n_levels + 1)))
    if args.fallback_to_best and not args.test_only:
        raise ParamsError("--fallback_to_best only applies to --test_only")
    if args.test_only and args.from_scratch:
        raise ParamsError("--test_only and --from_scratch exclude each other")
    if args.extra_loss and args.model != "two_branch":
        raise ParamsError("--extra_loss needs --model two_branch (got {!r})".format(args.model))
    if args.triplet_loss and not args.round_batches:
        raise ParamsError("--triplet_loss needs --round_batches (the loss uses full batches)")
    if args.spectral_pool and args.pool != "wap":
        raise ParamsError("--pool {} has no effect with --spectral_pool; leave --pool at wap"
                          .format(args.pool))
    if args.nonlinearity_upsample < 1:
        raise ParamsError("--nonlinearity_upsample must be >= 1, got {}".format(args.nonlinearity_upsample))
    if args.nonlinearity_upsample > 1 and args.nonlin in ("identity", "linear", "none"):
        raise ParamsError("--nonlinearity_upsample has no effect with --nonlin {}; leave it at 1"
                          .format(args.nonlin))
    if args.nonlinearity_upsample > 1 and args.model == "planar":
        raise ParamsError("--nonlinearity_upsample needs a spherical model; --model planar has no "
                          "spherical grid")
    if args.batch_renorm and not args.batch_norm:
        raise ParamsError("--batch_renorm needs --batch_norm")
    if args.train_bsize <= 0:
        raise ParamsError("--train_bsize must be positive, got {}".format(args.train_bsize))
    if args.recompute_bn < 0:
        raise ParamsError("--recompute_bn must be 0 (off) or a number of batches, got {}".format(
            args.recompute_bn))
    if args.n_epochs < 0:
        raise ParamsError("--n_epochs must be >= 0, got {}".format(args.n_epochs))
    if 0 not in args.learning_rate:
        raise ParamsError("--learning_rate must give a value for epoch 0, got {}"
                          .format(args.learning_rate))
    bad_lr = {e: v for e, v in args.learning_rate.items() if not (v > 0 and v < float("inf"))}
    if bad_lr:
        raise ParamsError("--learning_rate values must be positive and finite, got {}".format(bad_lr))
    if any(e < 0 for e in args.learning_rate):
        raise ParamsError("--learning_rate epochs must be >= 0, got {}".format(args.learning_rate))
    for name, low in (("test_n", 0), ("nchannels", 1), ("n_filter_params", 0),
                      ("tensorboard_histograms", 0)):
        if getattr(args, name) < low:
            raise ParamsError("--{} must be >= {}, got {}".format(name, low, getattr(args, name)))
    if args.first_n is not None and args.first_n < 1:
        raise ParamsError("--first_n must be >= 1 (or left out), got {}".format(args.first_n))
    if not args.regularization_weight >= 0:
        raise ParamsError("--regularization_weight must be >= 0, got {}".format(args.regularization_weight))
    if not 0 <= args.label_smoothing < 1:
        raise ParamsError("--label_smoothing must be in [0, 1), got {}".format(args.label_smoothing))
    if any(v <= 0 for v in args.nfilters):
        raise ParamsError("--nfilters must be positive, got {}".format(args.nfilters))
    if args.n_classes < 2:
        raise ParamsError("--n_classes must be >= 2, got {}".format(args.n_classes))
    if not args.test_only and not args.logdir:
        raise ParamsError("--logdir is required (checkpoints and logs are written there)")


def bundled_names():
    """Names (without ``.txt``) of the params files installed with the package."""
    return sorted(f[:-4] for f in os.listdir(PARAMS_DIR) if f.endswith(".txt"))


def bundled_path(name):
    """Path of the installed params file ``name`` (``model-64`` or ``model-64.txt``).

    Raises:
        FileNotFoundError: no such file; the message lists the available names.
    """
    base = name[:-4] if name.endswith(".txt") else name
    if base in bundled_names():
        return os.path.join(PARAMS_DIR, base + ".txt")
    raise FileNotFoundError("no params file {!r}; available: {}".format(
        name, ", ".join(bundled_names())))


#: CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix arithmetic: AVX-512 BF16, AMX-BF16.
NATIVE_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_native_bfloat16(cpuinfo="/proc/cpuinfo"):
    """The native bfloat16 flags of this CPU (a subset of ``NATIVE_BF16_CPU_FLAGS``), from the
    ``flags`` line of ``cpuinfo``; empty where there is none or the file cannot be read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[-1].split())
                    return tuple(f for f in NATIVE_BF16_CPU_FLAGS if f in flags)
    except OSError:
        pass
    return ()


def mixed_precision_policy(choice, have_gpu, log=None, cpuinfo="/proc/cpuinfo"):
    """The Keras dtype policy name for ``--mixed_precision choice`` (None: no change).

    ``auto`` picks ``mixed_float16`` on a GPU (tensor cores), ``mixed_bfloat16`` on a CPU
    with native bfloat16 matrix arithmetic (AVX-512 BF16 or AMX-BF16: about 1.3x faster
    than float32 for model-64 here; bfloat16 keeps float32's exponent range, so no loss
    scaling is needed), and float32 (None) on other CPUs, where bfloat16 is emulated:
    measured 0.71x of float32's speed there, with a relative error of 0.10-0.14 after three
    convolutions. An explicit ``bfloat16`` / ``float16`` is taken as asked. ``have_gpu``:
    whether the backend sees a GPU (the caller asks its backend, so that this module
    imports none); ``log(message)`` is told what ``auto`` picked and why.
    """
    if not choice:
        return None
    if choice == "auto":
        if have_gpu:
            choice, why = "float16", "a GPU is visible"
        else:
            native = cpu_native_bfloat16(cpuinfo)
            if not native:
                if log:
                    log("--mixed_precision auto: float32, because this CPU has no native bfloat16 "
                        "(no {} flag; emulated bfloat16 is slower and less accurate); "
                        "--mixed_precision bfloat16 forces it".format(" / ".join(NATIVE_BF16_CPU_FLAGS)))
                return None
            choice, why = "bfloat16", "the CPU multiplies bfloat16 natively ({})".format(", ".join(native))
        if log:
            log("--mixed_precision auto: {} (Keras dtype policy mixed_{}), because {}".format(
                choice, choice, why))
    return "mixed_" + choice


def learning_rate_at(schedule, epoch):
    """Learning rate in effect at ``epoch`` (0-based) for a ``{epoch: value}`` schedule."""
    starts = [e for e in sorted(schedule) if e <= epoch]
    return schedule[starts[-1]] if starts else schedule[min(schedule)]


def to_dict(args):
    """Flags as a plain dict (YAML/JSON serialisable)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in vars(args).items()}
