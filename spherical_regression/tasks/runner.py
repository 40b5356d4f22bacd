"""The training loop and the multi-seed study that every regression task shares.

A task (``viewpoint``, ``normals``, ``rotation``) supplies, for one (head, seed), a
:class:`Run`:

  model     a keras.Model with ``forward_parts(inputs, training)`` returning
            ``([O, ...], output)``: O the head's pre-activation (the logits the
            paper's gradient analysis is about; S_exp: the |y| logits, its sign
            logits second), ``output`` the head's output;
  loss_fn   per-element loss ``(targets, output) -> (batch,)`` or ``(batch, h, w)``
            for per-pixel tasks;
  train     dict: ``inputs`` (a tuple of arrays, first axis = samples),
            ``targets`` (same first axis) and optionally ``weights`` (the shape of
            the per-element loss, e.g. a foreground mask: the loss is the weighted
            mean over the batch);
  evaluate  ``model -> dict`` of test metrics (errors in degrees), the task's
            primary metric included.

:func:`fit` trains with Adam under a cosine-decayed learning rate, and records per
batch the loss and ||dL/dO|| (the norm of the gradient of the batch loss w.r.t. O;
the loss is a mean over the batch, so it carries the same 1/batch factor for every
head) and per epoch the test metrics. :func:`run_study` runs every (head, seed),
keeping each finished run in ``OUT/runs/<head>_seed<seed>.json`` so an interrupted
study resumes where it stopped (a run itself keeps a checkpoint in
``OUT/runs/<head>_seed<seed>.ckpt/`` while it trains: SIGTERM or Ctrl-C saves it at the
next step and exits 130; the same command resumes there, and the run's history, ||dL/dO||
and final weights equal an uninterrupted run's bit for bit), then writes ``results.json`` (every run),
``summary.csv`` (mean and std over seeds per head), ``table.md`` (the printed
table and whether the paper's ordering holds) and ``grad_norm.png`` (||dL/dO||
over training per head, the figure of the original's README).
"""
import csv
import dataclasses
import json
import math
import os
import shutil
import time

import numpy as np

from spherical_cnn.errors import (Interrupted, NonFiniteError, deferred_interrupts, interrupt_signal_name,
                                  interrupted)
from spherical_cnn.json_files import read_json as _read_json

HEAD_LABELS = {"sexp": "S_exp", "sflat": "S_flat", "direct": "Direct"}
PAPER_ORDER = ("sexp", "sflat", "direct")  # best to worst, as the paper reports


@dataclasses.dataclass
class Run:
    """What :func:`fit` needs for one (head, seed); see the module docstring."""
    model: object
    loss_fn: object
    train: dict
    evaluate: object


def _batches(n, batch_size, rng):
    """Index arrays of full batches of a fresh permutation (the last partial one dropped)."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def make_train_step(model, loss_fn, optimizer, weighted=False):
    """A compiled step ``(inputs, targets[, weights]) -> (loss, ||dL/dO||, ||dL/d sign
    logits|| or 0)`` that also applies the update."""
    import tensorflow as tf

    def step(inputs, targets, weights=None):
        with tf.GradientTape() as tape:
            parts, out = model.forward_parts(inputs, training=True)
            per = loss_fn(targets, out)
            if weights is None:
                loss = tf.reduce_mean(per)
            else:
                loss = tf.reduce_sum(per * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
        variables = model.trainable_variables
        grads = tape.gradient(loss, list(variables) + list(parts))
        optimizer.apply_gradients(zip(grads[:len(variables)], variables))
        part_grads = grads[len(variables):]
        o_norm = tf.norm(part_grads[0])
        sign_norm = tf.norm(part_grads[1]) if len(part_grads) > 1 else tf.constant(0.0)
        return loss, o_norm, sign_norm

    if weighted:
        return tf.function(step)
    return tf.function(lambda inputs, targets: step(inputs, targets))


def fit(run, *, epochs, batch_size, learning_rate, seed, tag="", log_dir=None, verbose=True,
        primary="MedErr", ckpt_dir=None, settings=None):
    """Train ``run.model`` and evaluate it after every epoch; returns a result dict with
    ``history`` (per epoch: loss, grad_norm_mean/std over its batches, sign_grad_norm_mean,
    time_s and the test metrics), ``grad_norms`` (per batch, 4 significant digits), the
    last epoch's metrics at the top level and ``train_time_s``.

    ``ckpt_dir``: keep a checkpoint there (model, optimizer, and in ``state.json`` the
    position, the batch generator's state and the figures so far) after every epoch and
    at an interrupt (SIGTERM, Ctrl-C: the step in flight finishes, then :class:`Interrupted`);
    a later call with the same ``settings`` resumes from it, with the same result as an
    uninterrupted run. A non-finite loss is :class:`NonFiniteError` (one line naming the
    flag to change)."""
    import keras
    import tensorflow as tf
    from spherical_cnn.checkpoints import CheckpointStore

    inputs = tuple(run.train["inputs"])
    targets = run.train["targets"]
    weights = run.train.get("weights")
    n = len(targets)
    if n < batch_size:
        raise ValueError(f"{n} training samples, fewer than the batch size {batch_size}")
    steps = epochs * (n // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(steps, 1), alpha=0.01)
    optimizer = keras.optimizers.Adam(schedule)
    step = make_train_step(run.model, run.loss_fn, optimizer, weighted=weights is not None)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    rng = np.random.default_rng(seed)
    st = dict(epoch=0, step=0, history=[], grad_norms=[], partial=[[], [], []], seconds=0.0,
              rng=rng.bit_generator.state)
    store = checkpoint = None
    if ckpt_dir:
        store = CheckpointStore(ckpt_dir)
        checkpoint = tf.train.Checkpoint(model=run.model, optimizer=optimizer)
        if store.path("latest"):  # create the variables to restore into (a forward pass, no update)
            run.model.forward_parts(tuple(tf.constant(as_model_input(x[:1])) for x in inputs), training=False)
            optimizer.build(run.model.trainable_variables)
        saved = _resume(store, checkpoint, settings, tag, verbose)
        st.update(saved or {})

    def save(epoch, done, partial, epoch_rng):
        if store is not None:
            store.save("latest", checkpoint, state=dict(
                st, epoch=epoch, step=done, partial=partial, rng=epoch_rng, settings=settings,
                seconds=time.time() - t0))

    t0 = time.time() - st["seconds"]
    history, grad_norms = st["history"], st["grad_norms"]
    gstep = len(grad_norms) + st["step"]
    with deferred_interrupts(raise_after=1):
        for epoch in range(st["epoch"], epochs):
            rng.bit_generator.state = st["rng"]
            epoch_rng = rng.bit_generator.state
            losses, onorms, snorms = st["partial"] if epoch == st["epoch"] else ([], [], [])
            first = st["step"] if epoch == st["epoch"] else 0
            batches = _batches(n, batch_size, rng)
            for i, idx in enumerate(batches[first:], first):
                if interrupted():
                    save(epoch, i, [losses, onorms, snorms], epoch_rng)
                    raise _interrupted(tag, epoch, i, len(batches), ckpt_dir)
                args = [tuple(tf.constant(as_model_input(x[idx])) for x in inputs),
                        tf.constant(targets[idx])]
                if weights is not None:
                    args.append(tf.constant(weights[idx]))
                loss, on, sn = step(*args)
                losses.append(float(loss)); onorms.append(float(on)); snorms.append(float(sn))
                if not (math.isfinite(losses[-1]) and math.isfinite(onorms[-1])):
                    what = "loss ({})".format(losses[-1]) if not math.isfinite(losses[-1]) else "gradient"
                    raise NonFiniteError(
                        f"{tag}: non-finite {what} at epoch {epoch + 1}, step {gstep + 1}: lower "
                        f"--learning_rate (now {learning_rate:g}); {_kept(store, st)}")
                if writer:
                    with writer.as_default(step=gstep):
                        tf.summary.scalar("batch/grad_norm_dL_dO", onorms[-1])
                        tf.summary.scalar("batch/loss", losses[-1])
                gstep += 1
                if interrupted():
                    save(epoch, i + 1, [losses, onorms, snorms], epoch_rng)
                    raise _interrupted(tag, epoch, i + 1, len(batches), ckpt_dir)
            grad_norms += onorms
            metrics = run.evaluate(run.model)
            if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
                raise NonFiniteError(
                    f"{tag}: the test metrics after epoch {epoch + 1} are not finite ({primary} "
                    f"{metrics.get(primary)}): the weights diverged; lower --learning_rate (now "
                    f"{learning_rate:g}); {_kept(store, st)}")
            rec = dict(epoch=epoch + 1, loss=float(np.mean(losses)),
                       grad_norm_mean=float(np.mean(onorms)), grad_norm_std=float(np.std(onorms)),
                       sign_grad_norm_mean=float(np.mean(snorms)), time_s=time.time() - t0,
                       **metrics)
            history.append(rec)
            st.update(epoch=epoch + 1, step=0, partial=[[], [], []], rng=rng.bit_generator.state)
            save(epoch + 1, 0, [[], [], []], rng.bit_generator.state)
            if writer:
                with writer.as_default(step=epoch + 1):
                    for k, v in rec.items():
                        if k not in ("epoch", "time_s") and isinstance(v, float):
                            tf.summary.scalar(f"epoch/{_summary_name(k)}", v)
            if verbose:
                print(f"[{tag}] epoch {epoch + 1}/{epochs} loss {rec['loss']:.4f} "
                      f"|dL/dO| {rec['grad_norm_mean']:.3e} +- {rec['grad_norm_std']:.1e} "
                      f"test {primary} {rec[primary]:.2f} ({rec['time_s']:.0f} s)", flush=True)
            if interrupted():  # during the evaluation or the save: the epoch is complete and kept
                raise _interrupted(tag, epoch + 1, 0, None, ckpt_dir)
    if writer:
        writer.flush()
    final = {k: v for k, v in history[-1].items() if k not in ("epoch", "loss", "time_s")}
    return dict(train_time_s=time.time() - t0, train_samples=int(n), history=history,
                grad_norms=[float(f"{g:.4g}") for g in grad_norms], **final)


def _kept(store, st):
    if store is not None and st["epoch"]:
        return f"its checkpoint after epoch {st['epoch']} is kept in {store.logdir}"
    return "nothing of this run was kept"


def _interrupted(tag, epoch, step, of, ckpt_dir):
    where = f"epoch {epoch} done" if of is None else f"epoch {epoch} and {step} step(s) of epoch {epoch + 1} (of {of})"
    kept = f"saved in {ckpt_dir}" if ckpt_dir else "nothing of this run was kept"
    return Interrupted(f"interrupted by {interrupt_signal_name() or 'a signal'} in run [{tag}] after {where}; "
                       f"{kept}; the same command resumes from there")


def _resume(store, checkpoint, settings, tag, verbose):
    """The state saved with the run's checkpoint, restored into ``checkpoint``; None (and the
    checkpoint removed) when there is none or it was made with other settings."""
    prefix = store.path("latest")
    state = store.state(prefix) if prefix else None
    if prefix is None:
        return None
    if state is None or state.get("settings") != settings:
        store.remove_all()
        return None
    store.restore("latest", checkpoint)
    if verbose:
        print(f"[{tag}] resuming from {prefix} at epoch {state['epoch'] + 1}, step {state['step']}", flush=True)
    return {k: state[k] for k in ("epoch", "step", "history", "grad_norms", "partial", "seconds", "rng")}


def as_model_input(batch):
    """uint8 image batches -> float32 in [0, 1]; integer ids stay integers; other floats
    -> float32."""
    batch = np.asarray(batch)
    if batch.dtype == np.uint8:
        return batch.astype(np.float32) / 255.0
    if np.issubdtype(batch.dtype, np.integer):
        return batch.astype(np.int32, copy=False)
    return batch.astype(np.float32, copy=False)


def _summary_name(key):
    return key.replace("@", "_at_").replace("/", "_").replace("%", "pct").replace(" ", "_")


# --- the study: heads x seeds ---------------------------------------------------------

def run_study(make_run, *, heads, seeds, out_dir, config, fit_kwargs, primary,
              metrics, verbose=True, title=None):
    """Run ``make_run(head, seed) -> Run`` then :func:`fit` for every (head, seed);
    returns ``(results, summary)``.

    A run whose file ``out_dir/runs/<head>_seed<seed>.json`` holds the same ``config``
    and ``fit_kwargs`` is read instead of retrained. ``metrics``: the metric keys of
    the table (``primary`` first), all "lower is better" except those starting with
    "Acc" or "<" (fractions of samples within a threshold).
    """
    runs_dir = os.path.join(out_dir, "runs")
    os.makedirs(runs_dir, exist_ok=True)
    settings = json.loads(json.dumps(dict(config=config, fit=fit_kwargs), default=str))
    results = []
    for head in heads:
        for seed in seeds:
            path = os.path.join(runs_dir, f"{head}_seed{seed}.json")
            old = _read_json(path)
            if old is not None and old.get("settings") == settings:
                if verbose:
                    print(f"[{head} seed {seed}] finished earlier: {path}", flush=True)
                results.append(old["result"])
                continue
            run = make_run(head, seed)
            ckpt_dir = os.path.join(runs_dir, f"{head}_seed{seed}.ckpt")
            result = fit(run, seed=seed, tag=f"{head} seed {seed}", primary=primary,
                         log_dir=os.path.join(out_dir, "tensorboard", f"{head}_seed{seed}"),
                         verbose=verbose, ckpt_dir=ckpt_dir, settings=settings, **fit_kwargs)
            result = dict(head=head, seed=seed, **result)
            _write_json(path, dict(settings=settings, result=result))
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # the run is done: its result is kept
            results.append(result)
    summary = summarize(results, metrics)
    write_outputs(out_dir, results, summary, settings, metrics, primary, title)
    return results, summary


def summarize(results, metrics):
    """Per head: mean, std (population, over seeds) and the seeds of each metric and of
    the grad-norm statistics."""
    keys = list(metrics) + ["grad_norm_mean_all", "grad_norm_rel_spread", "train_time_s"]
    summary = {}
    for head in dict.fromkeys(r["head"] for r in results):
        rs = [r for r in results if r["head"] == head]
        row = dict(head=head, seeds=[r["seed"] for r in rs])
        for key in keys:
            vals = np.array([_stat(r, key) for r in rs], np.float64)
            row[key] = dict(mean=float(np.mean(vals)), std=float(np.std(vals)),
                            values=[float(v) for v in vals])
        summary[head] = row
    return summary


def _stat(result, key):
    g = np.asarray(result["grad_norms"], np.float64)
    if key == "grad_norm_mean_all":
        return g.mean()
    if key == "grad_norm_rel_spread":  # scale-free spread of ||dL/dO|| over training
        return g.std() / g.mean() if g.mean() > 0 else float("nan")
    return result[key]


def higher_is_better(metric):
    return metric.startswith("Acc") or metric.startswith("<")


def paper_ordering(summary, primary):
    """(holds, text): whether mean ``primary`` ranks S_exp before S_flat before Direct."""
    heads = [h for h in PAPER_ORDER if h in summary]
    if len(heads) < 2:
        return None, "ordering: needs at least two heads"
    vals = [summary[h][primary]["mean"] for h in heads]
    sign = -1.0 if higher_is_better(primary) else 1.0
    holds = all(sign * a < sign * b for a, b in zip(vals, vals[1:]))
    text = ", ".join(f"{HEAD_LABELS[h]} {v:.2f}" for h, v in zip(heads, vals))
    return holds, (f"paper's ordering ({primary}: " + " better than ".join(
        HEAD_LABELS[h] for h in heads) + f") {'holds' if holds else 'does NOT hold'}: {text}")


def format_table(summary, metrics):
    """Markdown table: one row per head, ``mean +- std`` over seeds; "grad norm" is
    ||dL/dO|| over all training steps (its mean, and its std / mean)."""
    cols = list(metrics) + ["grad_norm_mean_all", "grad_norm_rel_spread"]
    names = list(metrics) + ["grad norm mean", "grad norm std/mean"]
    lines = ["| head | seeds | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(cols)]
    for head, row in summary.items():
        cells = [_cell(row[c], c) for c in cols]
        lines.append(f"| {HEAD_LABELS.get(head, head)} | {len(row['seeds'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(stat, key):
    if key.startswith("grad_norm_mean"):
        return f"{stat['mean']:.3g} +- {stat['std']:.2g}"
    if higher_is_better(key):
        return f"{100 * stat['mean']:.1f} +- {100 * stat['std']:.1f} %"
    return f"{stat['mean']:.2f} +- {stat['std']:.2f}"


def write_outputs(out_dir, results, summary, settings, metrics, primary, title=None):
    """results.json, summary.csv, table.md and grad_norm.png in ``out_dir``."""
    holds, ordering = paper_ordering(summary, primary)
    _write_json(os.path.join(out_dir, "results.json"),
                dict(settings=settings, primary=primary, paper_ordering_holds=holds,
                     paper_ordering=ordering, summary=summary, runs=results))
    cols = list(metrics) + ["grad_norm_mean_all", "grad_norm_rel_spread", "train_time_s"]
    tmp = os.path.join(out_dir, "summary.csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["head", "seeds"] + [f"{c}_{s}" for c in cols for s in ("mean", "std")])
        for head, row in summary.items():
            w.writerow([head, len(row["seeds"])]
                       + [f"{row[c][s]:.6g}" for c in cols for s in ("mean", "std")])
    os.replace(tmp, os.path.join(out_dir, "summary.csv"))
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(format_table(summary, metrics) + "\n\n" + ordering + "\n")
    plot_grad_norms(results, os.path.join(out_dir, "grad_norm.png"),
                    **({} if title is None else dict(title=title)))


def plot_grad_norms(results, path, title="||dL/dO|| during training"):
    """Per head: the per-batch norm averaged over seeds (thin) and its moving average
    (thick), log scale."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for head in dict.fromkeys(r["head"] for r in results):
        runs = [np.asarray(r["grad_norms"], np.float64) for r in results if r["head"] == head]
        length = min(len(g) for g in runs)
        if length == 0:
            continue
        mean = np.mean([g[:length] for g in runs], axis=0)
        window = max(1, length // 50)
        smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
        line, = ax.plot(np.arange(length), mean, lw=0.5, alpha=0.35)
        ax.plot(np.arange(len(smooth)) + (window - 1) / 2, smooth, lw=2, color=line.get_color(),
                label=f"{HEAD_LABELS.get(head, head)} ({len(runs)} seeds)")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("||dL/dO||")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False, default=_json_default)
    os.replace(tmp, path)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
