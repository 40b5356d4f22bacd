"""Every path and command that README.md and docs/*.md name exists (issue 30): paths of the
repository are files or folders, each command answers ``--help`` (in this process: no
TensorFlow is imported for it), and every ``--flag`` a command line of the docs passes is
one of that command's flags. One fast test; the README's runnable code is test_docs.py's."""
import ast
import contextlib
import glob
import importlib
import io
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))

# the installed commands (pyproject.toml's [project.scripts]) and their scripts/ wrappers
COMMANDS = {"spherical-cnn-train": "train", "spherical-cnn-make-dataset": "make_dataset",
            "spherical-cnn-make-images": "make_images", "spherical-cnn-import-furniture": "import_furniture",
            "spherical-cnn-predict": "predict", "spherical-cnn-check-dataset": "check_dataset",
            "spherical-cnn-ensemble": "ensemble",
            "spherical-cnn-retrieval": "retrieval", "spherical-cnn-rotation-study": "rotation_study",
            "spherical-cnn-params": "params", "spherical-regression-train": "train_regression",
            "spherical-regression": "regression"}
# repository folders whose paths the pages name (outputs such as data/, logs/ are not checked)
TREES = ("spherical_cnn", "spherical_regression", "scripts", "docs", "test", "tools", "benchmarks",
         "params", "examples", ".ci")
PATH = re.compile(r"(?<![\w./~-])((?:%s)/[\w./-]*\w)(\{?)" % "|".join(re.escape(t) for t in TREES))
OUTPUTS = ("benchmarks/results",)  # written by the benchmarks, ignored by git


def _code(text):
    """Command lines of the pages: the lines of sh/bash blocks (continuations joined) and the
    inline code spans that start with a command."""
    lines = []
    for block in re.findall(r"^```(?:sh|bash|console)\n(.*?)^```$", text, re.M | re.S):
        lines += block.replace("\\\n", " ").splitlines()
    lines += re.findall(r"`([^`\n]+)`", text)
    return lines


def _command_of(tokens):
    """(cli module name, arguments) of a command line, or None."""
    for i, tok in enumerate(tokens):
        if tok in COMMANDS:
            return COMMANDS[tok], tokens[i + 1:]
        m = re.match(r"(?:\./)?scripts/(\w+)\.py$", tok)
        if m and i and re.search(r"python[0-9.]*$", tokens[i - 1]):
            return m.group(1), tokens[i + 1:]
    return None


def _help(module, args):
    """The --help text of a command (``spherical-regression TASK --help`` for a task)."""
    main = importlib.import_module("spherical_cnn.cli." + module).main
    task = args[:1] if module == "regression" and args and args[0] in ("viewpoint", "normals", "rotation") else []
    argv = task + ["--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as stop:
            assert stop.code in (0, None), (module, argv)
    return out.getvalue()


def _with_passed_through(module, args):
    """[(module, args)] of a command line: the rotation study's ``--flags ...`` (everything
    after it) are train.py's flags, so they are checked against train's --help."""
    if module == "rotation_study" and "--flags" in args:
        cut = args.index("--flags")
        return [(module, args[:cut + 1]), ("train", args[cut + 1:])]
    return [(module, args)]


def test_flags_after_the_studys_flags_are_trains():
    assert _with_passed_through("rotation_study", ["--seeds", "0", "--flags", "--nfilters", "8"]) == [
        ("rotation_study", ["--seeds", "0", "--flags"]), ("train", ["--nfilters", "8"])]
    assert "--nfilters" in _help("train", []) and "--nfilters" not in _help("rotation_study", [])


def test_every_path_and_command_of_the_docs_exists():
    problems, helps = [], {}
    scripts = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "scripts", "*.py"))}
    assert set(COMMANDS.values()) <= scripts
    for page in PAGES:
        text = open(page).read()
        name = os.path.relpath(page, ROOT)
        for path, brace in set(PATH.findall(text)):
            if brace or re.search(r"[A-Z]{3,}|<|\*", path) or path.startswith(OUTPUTS):
                continue  # a placeholder (LOGDIR, <name>, *.tfrecord, name{1,2}) or an output
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.append(f"{name}: path {path} does not exist")
        for line in _code(text):
            try:
                tokens = shlex.split(line.split(" # ")[0], comments=False)
            except ValueError:
                continue  # not a shell line (an unbalanced quote in prose)
            found = _command_of(tokens)
            if found is None:
                continue
            for module, args in _with_passed_through(*found):
                key = (module, args[0] if module == "regression" and args and args[0] in (
                    "viewpoint", "normals", "rotation") else None)
                if key not in helps:
                    helps[key] = _help(module, args)
                flags = {t.split("=")[0] for t in args if re.match(r"--[a-z]", t)}
                for flag in sorted(flags):
                    if not re.search(re.escape(flag) + r"\b", helps[key]):
                        problems.append(f"{name}: {module} has no flag {flag} ({line.strip()[:80]})")
    assert len(helps) >= 8  # the pages name most commands
    assert not problems, "\n".join(problems)


# dotted module names of the packages (spherical_cnn.studies.retrieval, spherical_cnn.rotate)
MODULE = re.compile(r"(?<![\w./-])((?:spherical_cnn|spherical_regression)(?:\.[A-Za-z_]\w*)+)")


def _top_level_names(path):
    """Names a module binds at its top level (definitions, assignments, imports), and for a
    package the names its ``_EXPORTS`` and ``_SUBMODULES`` make attributes on first use."""
    tree = ast.parse(open(path).read(), path)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                if getattr(target, "id", None) in ("_EXPORTS", "_SUBMODULES") and node.value is not None:
                    value = ast.literal_eval(node.value)
                    names.update(value.keys() if isinstance(value, dict) else value)
    return names


def module_problem(dotted, root=ROOT):
    """None if ``dotted`` names a module of the tree, or a name its module (or package) binds;
    else what is wrong. Read from the source: nothing is imported."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        base = os.path.join(root, *parts[:k])
        path = base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")
        if os.path.isfile(path):
            break
    else:
        return f"{dotted}: no such package"
    rest = parts[k:]
    if rest and rest[0] not in _top_level_names(path):
        return f"{dotted}: {'.'.join(parts[:k])} has no module or name {rest[0]}"
    return None


def test_the_module_check_finds_a_moved_module(tmp_path):
    pkg = tmp_path / "spherical_cnn"
    (pkg / "studies").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_EXPORTS = {"rotate": "rotation"}\n_SUBMODULES = ("layers",)\n')
    (pkg / "studies" / "__init__.py").write_text("")
    (pkg / "studies" / "retrieval.py").write_text("from os import path as p\ndef evaluate():\n    pass\n")
    assert MODULE.findall("see `spherical_cnn.studies.retrieval.evaluate`, docs/x.md and "
                          "spherical_cnn/retrieval.py.") == ["spherical_cnn.studies.retrieval.evaluate"]
    for ok in ("spherical_cnn.studies.retrieval.evaluate", "spherical_cnn.studies.retrieval.p",
               "spherical_cnn.rotate", "spherical_cnn.layers", "spherical_cnn.studies"):
        assert module_problem(ok, str(tmp_path)) is None, ok
    assert module_problem("spherical_cnn.retrieval", str(tmp_path)) == \
        "spherical_cnn.retrieval: spherical_cnn has no module or name retrieval"
    assert module_problem("spherical_cnn.studies.retrieval.missing", str(tmp_path)) is not None


def test_every_module_the_docs_name_exists():
    """Dotted module names in README.md and docs/*.md (``spherical_cnn.studies.retrieval``) are
    modules of the tree or names their module binds; the file paths (``spherical_cnn/...py``,
    ``scripts/``, ``tools/``, ``benchmarks/``) are checked by the test above."""
    problems = []
    for page in PAGES:
        for dotted in sorted(set(MODULE.findall(open(page).read()))):
            problem = module_problem(dotted)
            if problem:
                problems.append(f"{os.path.relpath(page, ROOT)}: {problem}")
    assert not problems, "\n".join(problems)
