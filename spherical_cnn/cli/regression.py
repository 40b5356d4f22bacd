"""Spherical regression tasks (Liao et al. 2019) on built-in data: each head, several seeds.

    spherical-regression viewpoint     S^1: azimuth of a shape from its render
    spherical-regression normals       S^2: per-pixel surface normals of a scene
    spherical-regression rotation      S^3: 3D pose of a shape (ModelNet10-SO3-like)

Each task trains the S_exp, S_flat and Direct heads (--head) for every seed
(--seeds), prints a table of mean +- std over the seeds and whether the paper's
ordering (S_exp better than S_flat better than Direct) holds, and writes to --out:
results.json (every run, with its per-epoch history), summary.csv, table.md, grad_norm.png
(||dL/dO|| over training per head), runs/ (one file per finished run: a study
that is run again skips them) and tensorboard/. --quick runs a tiny version
(seconds) to check that everything works.

    spherical-regression viewpoint --quick
    spherical-regression normals --head sexp --seeds 0
    spherical-regression rotation --data ~/ModelNet10-SO3 --data_train_set train_20V
"""
import importlib
import os

from . import common
from ..errors import UserError

TASKS = {"viewpoint": "spherical_regression.tasks.viewpoint",
         "normals": "spherical_regression.tasks.normals",
         "rotation": "spherical_regression.tasks.rotation"}
HEADS = ("sexp", "sflat", "direct")
# the size flags of every task (runner.fit's settings); a task adds its own (SIZE_FLAGS)
TRAINING_FLAGS = {
    "epochs": (int, "training epochs"),
    "batch_size": (int, "training samples per batch"),
    "learning_rate": (float, "peak Adam learning rate (cosine decay to 1%% of it)"),
}


def size_flags(task):
    """{flag: (type, help)}: the task's own size flags, then the training flags."""
    return {**task.SIZE_FLAGS, **TRAINING_FLAGS}


def task_module(name):
    """The task's light module (flags, data, metrics' names): no Keras at import."""
    return importlib.import_module(TASKS[name])


def model_module(name):
    """The task's model module ``<task>_model`` (imports Keras): its ``make_run``."""
    return importlib.import_module(TASKS[name] + "_model")


def add_task_parser(subparsers_or_none, name, prog=None):
    """The parser of one task: the shared flags, then the task's own."""
    task = task_module(name)
    kw = dict(description=task.__doc__, formatter_class=common.HelpFormatter,
              fromfile_prefix_chars="@", epilog=common.epilog(common.ARGFILE_HELP))
    if subparsers_or_none is None:
        p = common.ArgumentParser(prog=prog, **kw)
    else:
        p = subparsers_or_none.add_parser(name, help=task.SUMMARY, **kw)
    p.set_defaults(task=name)
    p.add_argument("--head", default="all", choices=list(HEADS) + ["all"],
                   help="regression head(s) to train")
    p.add_argument("--seeds", default="0,1,2",
                   help="comma-separated seeds; each head is trained once per seed")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes and 2 epochs: checks the whole task in seconds")
    sizes = p.add_argument_group("sizes")
    for flag, (kind, text) in size_flags(task).items():
        sizes.add_argument(f"--{flag}", type=kind, default=None,
                           help=f"{text} (default: {task.DEFAULTS[flag]}; with --quick: {task.QUICK[flag]})")
    p.add_argument("--data_dir", default="data/regression",
                   help="cache of the rendered datasets (reused while the settings match)")
    p.add_argument("--out", default=None,
                   help=f"results folder (default logs/regression/{name})")
    task.add_arguments(p)
    return common.add_output_flags(p)


def build_parser():
    p = common.ArgumentParser(prog="spherical-regression", description=__doc__,
                              formatter_class=common.HelpFormatter)
    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in TASKS:
        add_task_parser(sub, name)
    return p


def finish_args(p, args):
    """Fill the size flags from the task's defaults (or QUICK), check them; argparse's
    one-line error (exit 2) for a bad value."""
    task = task_module(args.task)
    base = task.QUICK if args.quick else task.DEFAULTS
    for flag in size_flags(task):
        if getattr(args, flag) is None:
            setattr(args, flag, base[flag])
        value = getattr(args, flag)
        if flag == "learning_rate":
            if not value > 0:
                p.error(f"--learning_rate must be > 0, got {value}")
        elif value < 1:
            p.error(f"--{flag} must be >= 1, got {value}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must name distinct seeds, got {args.seeds}")
    args.heads = list(HEADS) if args.head == "all" else [args.head]
    if args.out is None:
        args.out = os.path.join("logs", "regression", args.task + ("_quick" if args.quick else ""))
    task.check_args(p, args)
    return args


def parse_args(argv=None, task=None):
    """``task`` given: parse that task's flags only (the ``train_regression`` command)."""
    p = add_task_parser(None, task, prog=f"spherical-regression {task}") if task else build_parser()
    return finish_args(p, p.parse_args(argv))


def run(args):
    """Load or render the data, run the study, print the table; returns (results, summary)."""
    from spherical_regression.tasks import runner

    task = task_module(args.task)
    train, test = task.load_data(args)
    n_train = len(train["targets"])
    if n_train < args.batch_size:
        raise UserError(f"{n_train} training samples, fewer than --batch_size {args.batch_size}")
    print(f"{args.task}: {task.describe_data(train, test)}", flush=True)
    fit_kwargs = dict(epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.learning_rate)
    model = model_module(args.task)
    results, summary = runner.run_study(
        lambda head, seed: model.make_run(head, seed, train, test, args),
        heads=args.heads, seeds=args.seeds, out_dir=args.out, config=task.config(args),
        fit_kwargs=fit_kwargs, primary=task.PRIMARY, metrics=task.METRICS,
        title=f"{task.SUMMARY.split(':')[0]} {args.task}: ||dL/dO|| during training")
    print()
    print(runner.format_table(summary, task.METRICS))
    holds, text = runner.paper_ordering(summary, task.PRIMARY)
    if holds is not None:
        print(text)
    if args.quick:
        print("(--quick: tiny data and 2 epochs check that the task runs; its figures say nothing "
              "about the heads)")
    print(f"\nresults: {os.path.join(args.out, 'results.json')}, summary.csv, grad_norm.png")
    return results, summary


def main(argv=None):
    """Command-line entry: parse, silence TensorFlow, run; exit status 0."""
    args = parse_args(argv)
    common.quiet_tensorflow(args.verbose)
    run(args)
    return 0
