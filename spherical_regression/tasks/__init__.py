"""The spherical regression tasks, one module each (the reusable heads, losses,
metrics and sign layouts are in the package above).

  rotation        S^3: object pose as a unit quaternion (w, x, y, z) from an image;
                  the ModelNet10-SO3-like experiment (train/evaluate the S_exp,
                  S_flat and Direct heads, ||dL/dO|| statistics).
  rotation_data   its data rendered from meshes (built-in synthetic shapes or a
                  ModelNet-style tree), cached as npz.
  modelnet10_so3  its data from the original's ModelNet10-SO3 release (LMDB folders
                  of JPEG views plus viewID2quat.pkl).

Modules are imported on use (TensorFlow, trimesh and lmdb are heavy or optional).
"""
