"""Mesh -> spherical-map data tools: loading (meshes), ray casting (raycast), rotations,
TFRecord records, the synthetic shape generator and the dataset builder.

Importing this package does not import TensorFlow (only records.py and the
builder's main process need it).
"""
