"""Copy a finished rotation-study run (--no_export, no results.json) to DEST and turn it into an
ordinary training logdir: resume at its last epoch (0 epochs to run), test, export model.keras,
write results.json. Usage: python3 benchmarks/export_study_run.py RUN_DIR DEST"""
import os, shutil, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from spherical_cnn import training
from spherical_cnn.runlock import LogdirLock
src, dest = sys.argv[1:3]
if os.path.exists(dest):
    sys.exit(f'{dest} exists')
shutil.copytree(src, dest, ignore=shutil.ignore_patterns('.lock', 'study_run.json', 'events.*'))
args = training.load_flags(dest, {"logdir": dest, "from_scratch": False, "export": True, "test_only": False})
logger = training.get_logger(dest)
with LogdirLock(dest):
    print(training._run_locked(args, logger, {}))
