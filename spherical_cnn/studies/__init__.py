"""Studies built on the core package: experiments, not layers.

- ``rotation_study``: trains models under the four rotation regimes and tabulates
  accuracy, consistency over rotations and spread across test rotations (its parts:
  ``rotation_config``, ``rotation_variants``, ``rotation_datasets``, ``rotation_meshes``,
  ``rotation_images``, ``rotation_models``, ``rotation_runs``, ``rotation_tables``,
  ``rotation_plot``, ``rotation_reports``; ``rotation_study`` re-exports their names);
- ``rotation_metrics``: those invariance metrics from per-record predictions;
- ``equivariance``: per-block equivariance error of trained networks (pyshtools);
- ``retrieval``: SHREC'17-style retrieval evaluation of learned descriptors.

The core modules (``layers``, ``sht``, ``models``, ``training``, ``datasets``,
``data``) never import from here.
"""
