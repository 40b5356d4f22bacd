"""The training loop and study runner shared by the regression tasks (tasks/runner.py)."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import spherical_regression as sr
from spherical_regression.tasks import runner


class ToyRegressor(keras.Model):
    """Dense features -> a head on S^2; inputs ``(x,)`` with x ``(batch, 5)`` or a per-pixel
    ``(batch, h, w, 5)``."""

    def __init__(self, head):
        super().__init__()
        self.features = keras.layers.Dense(8, activation="tanh")
        self.head = sr.make_head(head, 3)

    def forward_parts(self, inputs, training=False):
        parts = self.head.pre_activation(self.features(inputs[0]))
        return parts, self.head.activate(parts)


def _unit(rng, shape):
    v = rng.standard_normal(shape + (3,))
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype("float32")


def test_weighted_step_is_the_masked_mean_and_ignores_masked_targets():
    """Per-pixel loss with a mask: the step's loss is sum(l w) / sum(w), and targets under
    w = 0 change neither the loss nor dL/dO."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, 5)).astype("float32")
    y = _unit(rng, (2, 3, 3))
    w = (rng.random((2, 3, 3)) < 0.5).astype("float32")
    w[0, 0, 0] = 1.0
    keras.utils.set_random_seed(0)
    model = ToyRegressor("sflat")
    loss_fn = sr.SFlatLoss().call
    step = runner.make_train_step(model, loss_fn, keras.optimizers.SGD(0.0), weighted=True)
    per = np.asarray(loss_fn(y, model.forward_parts((x,))[1]))
    loss, o_norm, _ = step((tf.constant(x),), tf.constant(y), tf.constant(w))
    assert float(loss) == pytest.approx((per * w).sum() / w.sum(), rel=1e-5)
    y2 = np.where(w[..., None] > 0, y, _unit(rng, (2, 3, 3)))
    loss2, o_norm2, _ = step((tf.constant(x),), tf.constant(y2), tf.constant(w))
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6)
    assert float(o_norm2) == pytest.approx(float(o_norm), rel=1e-6)


def _toy_run(head, seed, calls):
    calls.append((head, seed))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((32, 5)).astype("float32")
    y = _unit(rng, (32,))
    keras.utils.set_random_seed(seed)
    model = ToyRegressor(head)

    def evaluate(m):
        pred = np.asarray(m.head.decode(m.forward_parts((x,))[1]))
        err = sr.vector_angle(y, pred)
        return dict(MedErr=sr.median_error_deg(err), **{"Acc@pi/6": sr.accuracy_at(err, np.pi / 6)})
    return runner.Run(model, sr.loss_for_head(head).call, dict(inputs=(x,), targets=y), evaluate)


def test_study_resumes_after_an_interruption_and_retrains_changed_settings(tmp_path):
    calls = []
    kw = dict(heads=["sexp", "sflat"], seeds=[0, 1], out_dir=str(tmp_path), config=dict(a=1),
              fit_kwargs=dict(epochs=1, batch_size=8, learning_rate=1e-2), primary="MedErr",
              metrics=("MedErr", "Acc@pi/6"), verbose=False)

    def interrupted(head, seed):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as Ctrl-C during the third run
        return _toy_run(head, seed, calls)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(interrupted, **kw)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    calls.clear()
    results, summary = runner.run_study(lambda h, s: _toy_run(h, s, calls), **kw)
    assert calls == [("sflat", 0), ("sflat", 1)]  # the two finished runs were read back
    assert [(r["head"], r["seed"]) for r in results] == [
        ("sexp", 0), ("sexp", 1), ("sflat", 0), ("sflat", 1)]
    for head in ("sexp", "sflat"):
        vals = [r["MedErr"] for r in results if r["head"] == head]
        assert summary[head]["MedErr"]["mean"] == pytest.approx(np.mean(vals))
        g = np.concatenate([r["grad_norms"] for r in results if r["head"] == head][:1])
        assert summary[head]["grad_norm_mean_all"]["values"][0] == pytest.approx(g.mean())
    calls.clear()
    runner.run_study(lambda h, s: _toy_run(h, s, calls), **dict(kw, config=dict(a=2)))
    assert len(calls) == 4  # other settings: nothing reused
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["config"] == dict(a=2) and len(saved["runs"]) == 4


def test_paper_ordering_and_table():
    def row(v):
        return {"MedErr": dict(mean=v, std=0.5), "Acc@pi/6": dict(mean=1 - v / 100, std=0.01),
                "grad_norm_mean_all": dict(mean=0.1, std=0.01),
                "grad_norm_rel_spread": dict(mean=0.2, std=0.01), "seeds": [0, 1, 2]}
    good = {"sexp": row(5.0), "sflat": row(7.0), "direct": row(9.0)}
    assert runner.paper_ordering(good, "MedErr")[0] is True
    assert runner.paper_ordering(good, "Acc@pi/6")[0] is True  # higher is better
    bad = dict(good, sflat=row(4.0))
    holds, text = runner.paper_ordering(bad, "MedErr")
    assert holds is False and "does NOT hold" in text
    table = runner.format_table(good, ("MedErr", "Acc@pi/6"))
    assert "| S_exp | 3 | 5.00 +- 0.50 | 95.0 +- 1.0 % |" in table
