"""The spherical regression tasks, one module each (the reusable heads, losses,
metrics and sign layouts are in the package above).

  rotation        S^3: object pose as a unit quaternion (w, x, y, z) from an image,
                  the ModelNet10-SO3-like task (flags, data, runs);
  rotation_model  its model (category-conditioned heads), loss and per-category
                  evaluation.
  rotation_data   its data rendered from meshes (built-in synthetic shapes or a
                  ModelNet-style tree), cached as npz.
  modelnet10_so3  its data from the original's ModelNet10-SO3 release (LMDB folders
                  of JPEG views plus viewID2quat.pkl).

  viewpoint       S^1: azimuth of a shape from its render.
  normals         S^2: per-pixel surface normals of rendered scenes.
  runner          the training loop and the multi-seed study the tasks share.
  common          the CNN backbone, the npz cache, the asymmetric built-in classes.

A task module is driven by ``spherical_cnn.cli.regression`` through:
  SUMMARY          one line for ``--help``
  SIZE_FLAGS       {flag: (type, help)} of the task's size flags (the CLI adds
                   epochs, batch_size and learning_rate); DEFAULTS / QUICK give the
                   values of all of them at full size / with ``--quick``
  PRIMARY, METRICS the metric the heads are ranked by, and the table's columns
  add_arguments(parser), check_args(parser, args)   the task's own flags
  load_data(args) -> (train, test)                  dicts; ``train["targets"]`` counts
  describe_data(train, test) -> str                 one line of sizes
  config(args) -> dict                              what determines a run (for reuse)
and its model module ``<task>_model`` through:
  make_run(head, seed, train, test, args) -> runner.Run
The task module must not import Keras, TensorFlow or trimesh at import time (a
command's ``--help`` reads it) and never imports its model module: the model
module imports the task's constants, the CLI imports the model module only to
run (so the two do not import each other).

Modules are imported on use (TensorFlow, trimesh and lmdb are heavy or optional).
"""
