"""Flags: the params files parse to the original values; bad flags give clear errors."""
import os

import pytest

from spherical_cnn import params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def p(name):
    return "@" + os.path.join(ROOT, "params", name)


def test_demo_params_files_parse_to_original_values(tmp_path):
    args = params.parse([p("model-64.txt"), p("m40-64.txt"), p("training.txt"),
                         "--dset_dir", str(tmp_path), "--logdir", str(tmp_path / "run")])
    assert args.model == "two_branch"
    assert args.nonlin == "prelu"
    assert args.batch_norm and args.extra_loss and args.weighted_sph_avg and args.no_final_fc
    assert args.n_filter_params == 8
    assert args.nfilters == [16, 16, 32, 32, 64, 64, 128, 128]
    assert args.pool_layers == [0, 0, 1, 0, 1, 0, 1, 0]
    assert args.concat_branches == [0, 0, 1, 0, 1, 0, 1, 0]
    assert args.transform_method == "naive"
    assert args.dset == "from_cached_tfrecords"
    assert args.n_classes == 40 and args.input_res == 64 and args.dtype == "complex64"
    assert args.mag_ang and args.real_inputs
    assert args.n_epochs == 48 and args.train_bsize == 16 and args.skip_val
    assert args.learning_rate == {0: 0.001, 32: 0.0002, 40: 0.00004}
    assert args.run_id == "run"
    # untouched flags keep the original defaults
    assert args.optimizer == "adam" and args.regularization_weight == 0
    assert args.pool == "wap" and args.final_pool == "gap" and args.test_n == 0
    assert args.first_n is None and args.nchannels == 1 and not args.spectral_pool


def test_every_original_flag_and_short_form_exists():
    parser = params.build_parser()
    option_strings = {s for a in parser._actions for s in a.option_strings}
    pairs = [("model", "m"), ("logdir", "ld"), ("run_id", "id"), ("test_only", "to"),
             ("dset", "d"), ("dset_dir", "dd"), ("n_classes", "nc"), ("dtype", "dt"),
             ("first_n", "fn"), ("test_n", "tn"), ("input_res", "res"), ("skip_val", "sv"),
             ("optimizer", "o"), ("learning_rate", "lr"), ("regularization_weight", "reg"),
             ("n_epochs", "ne"), ("from_scratch", "fs"), ("train_bsize", "bs"),
             ("dropout", "do"), ("batch_norm", "bn"), ("batch_renorm", "brn"), ("nonlin", "nl"),
             ("spectral_pool", "sp"), ("pool", "p"), ("n_filter_params", "nfp"),
             ("weighted_sph_avg", "wsa"), ("final_pool", "fp"), ("extra_loss", "el"),
             ("triplet_loss", "tl"), ("round_batches", "rb"), ("no_final_fc", "nofc"),
             ("transform_method", "tm"), ("real_inputs", "ri")]
    for long, short in pairs:
        assert "--" + long in option_strings
        assert "-" + short in option_strings
    for long in ["spectral_input", "mag_ang", "nchannels", "nfilters", "pool_layers",
                 "concat_branches"]:
        assert "--" + long in option_strings
    defaults = params.build_parser().parse_args([])
    assert defaults.n_classes == 10 and defaults.dtype == "float32" and defaults.input_res == 32
    assert defaults.train_bsize == 128 and defaults.n_epochs == 10
    assert defaults.learning_rate == {0: 1e-3} and defaults.nonlin == "prelu"
    assert defaults.dset_dir == os.path.expanduser("~/bigdata")


def test_bundled_params_files_parse(tmp_path):
    names = [n for n in sorted(os.listdir(os.path.join(ROOT, "params"))) if n.endswith(".txt")]
    assert len(names) >= 6
    for name in names:
        args = params.parse([p(name), "--logdir", str(tmp_path)])
        assert len(args.nfilters) == len(args.pool_layers)


@pytest.mark.parametrize("argv, message", [
    (["--nfilters", "8,8", "--pool_layers", "0,1,0"], "--nfilters has 2 entries but --pool_layers has 3"),
    (["--model", "two_branch", "--nfilters", "8,8", "--pool_layers", "0,1",
      "--concat_branches", "0"], "--concat_branches has 1"),
    (["--triplet_loss"], "--round_batches"),
    (["--extra_loss", "--model", "other"], "--extra_loss needs --model two_branch"),
    (["--spectral_pool", "--pool", "max"], "--spectral_pool"),
    (["--input_res", "12"], "--input_res 12"),
    (["--batch_renorm"], "--batch_renorm needs --batch_norm"),
    (["--learning_rate", "{5: 0.1}"], "epoch 0"),
    (["--label_smoothing", "1"], "--label_smoothing must be in .* got 1.0"),
    (["--label_smoothing", "-0.1"], "--label_smoothing must be in .* got -0.1"),
])
def test_bad_combinations_name_the_flags(argv, message, tmp_path):
    with pytest.raises(params.ParamsError, match=message.replace("(", r"\(")):
        params.parse(argv + ["--logdir", str(tmp_path)])


def test_bad_learning_rate_is_an_argparse_error(capsys, tmp_path):
    with pytest.raises(SystemExit):
        params.parse(["--learning_rate", "{0: [", "--logdir", str(tmp_path)])
    assert "--learning_rate" in capsys.readouterr().err


def test_learning_rate_schedule_lookup():
    schedule = {0: 1e-3, 32: 2e-4, 40: 4e-5}
    assert params.learning_rate_at(schedule, 0) == 1e-3
    assert params.learning_rate_at(schedule, 31) == 1e-3
    assert params.learning_rate_at(schedule, 32) == 2e-4
    assert params.learning_rate_at(schedule, 47) == 4e-5


def test_flags_roundtrip_through_dict(tmp_path):
    args = params.parse([p("model-64.txt"), "--logdir", str(tmp_path)])
    again = params.parse(params.to_dict(args))
    assert vars(again) == vars(args)
    with pytest.raises(params.ParamsError, match="unknown flag 'bogus'"):
        params.parse({**params.to_dict(args), "bogus": 1})


def test_params_link_is_the_installed_folder():
    """params/ (README commands) and the package data are one copy of the files."""
    assert os.path.samefile(os.path.join(ROOT, "params"), params.PARAMS_DIR)
    assert params.bundled_names() == ["fmnist-32", "furniture-32", "m40-64", "model-32", "model-64",
                                      "recipe-fmnist-32", "recipe-furniture-32", "synthetic-32", "training",
                                      "training-cpu"]
    assert params.bundled_path("model-64.txt") == params.bundled_path("model-64")
    with pytest.raises(FileNotFoundError, match="model-32"):
        params.bundled_path("model-65")


@pytest.mark.parametrize("choice, have_gpu, policy", [
    (None, True, None), ("auto", True, "mixed_float16"), ("auto", False, "mixed_bfloat16"),
    ("bfloat16", True, "mixed_bfloat16"), ("float16", False, "mixed_float16")])
def test_mixed_precision_policy_per_device(choice, have_gpu, policy, tmp_path):
    """--mixed_precision's Keras policy: 'auto' is float16 with a GPU, bfloat16 without; an
    explicit choice holds on either (a rule without TensorFlow, for the GPU check)."""
    flags = ["--logdir", str(tmp_path)] + (["--mixed_precision"] + ([choice] if choice != "auto" else [])
                                           if choice else [])
    cpuinfo = tmp_path / "cpuinfo"  # a CPU with native bfloat16 (test_library_traps: one without)
    cpuinfo.write_text("flags\t\t: fpu avx512f amx_bf16\n")
    assert params.mixed_precision_policy(params.parse(flags).mixed_precision, have_gpu,
                                         cpuinfo=str(cpuinfo)) == policy
