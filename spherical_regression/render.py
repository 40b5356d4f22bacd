"""Orthographic ray-cast renderer for meshes in the unit ball (trimesh + embreex).

Camera frame: x to the right, y up, the camera looks along -z from z = +2. The
image covers [-1, 1]^2, so a mesh normalised into the unit ball always fits.
A rotation R shows the object with its points moved to R p. Instead of moving
the mesh (and rebuilding the ray-tracing structure per view), the rays are
moved to the object frame by R^T.

Images are ``(height, width, channels)`` float32 in [0, 1], row 0 at the top
(y = +1). Channels, in this order, as selected by ``channels``:
  'shade': Lambert shading, ambient 0.15 + 0.85 max(0, n.l), n the face normal
           turned towards the camera (meshes need not be consistently oriented),
           l a fixed light direction in the camera frame; background 0.
  'depth': 1 at z = +1 (nearest possible) to 0 at z = -1; background 0.

:meth:`OrthoRenderer.render_full` also returns, per pixel, the unit normal of the
hit face in this camera frame (x right, y up, z towards the camera), turned towards
the camera (n_z >= 0), and the foreground mask (1 where a ray hit the mesh).
"""
import numpy as np

CHANNELS = {"shade": ("shade",), "depth": ("depth",), "both": ("shade", "depth")}
LIGHT_DIR = np.array([0.4, 0.5, 0.77]) / np.linalg.norm([0.4, 0.5, 0.77])
_CAMERA_Z = 2.0


def _intersector(mesh):
    try:
        from trimesh.ray.ray_pyembree import RayMeshIntersector
        return RayMeshIntersector(mesh)
    except Exception:  # embreex missing: trimesh's pure-Python (slow) intersector
        import trimesh.ray.ray_triangle
        return trimesh.ray.ray_triangle.RayMeshIntersector(mesh)


class OrthoRenderer:
    """Renders one mesh under many rotations; build once per mesh."""

    def __init__(self, mesh, size=64, channels="both"):
        if channels not in CHANNELS:
            raise ValueError(f"channels must be one of {sorted(CHANNELS)}, got {channels!r}")
        if not isinstance(size, int) or size < 2:
            raise ValueError(f"image size must be an int >= 2, got {size!r}")
        radius = np.linalg.norm(mesh.vertices, axis=1).max()
        if radius > 1.0 + 1e-6:
            raise ValueError(f"mesh must lie in the unit ball (max vertex radius {radius:.4f});"
                             " normalise it first")
        self.mesh, self.size, self.channels = mesh, size, CHANNELS[channels]
        self._rt = _intersector(mesh)
        c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
        xs, ys = np.meshgrid(c, -c)  # row 0 at the top
        self._origins_cam = np.stack([xs.ravel(), ys.ravel(),
                                      np.full(xs.size, _CAMERA_Z)], axis=1)

    def render(self, rotation):
        """Image ``(size, size, channels)`` of the mesh rotated by matrix ``(3, 3)``."""
        return self.render_full(rotation)["image"]

    def render_full(self, rotation):
        """The render of the mesh rotated by matrix ``(3, 3)`` as a dict:
          image    ``(size, size, channels)`` float32 (module docstring);
          normals  ``(size, size, 3)`` float32, the unit face normal in the camera
                   frame (x right, y up, z towards the camera) turned towards the
                   camera (z >= 0); zero on the background;
          mask     ``(size, size)`` float32, 1 where a ray hit the mesh, else 0.
        """
        r = np.asarray(rotation, dtype=np.float64)
        if r.shape != (3, 3):
            raise ValueError(f"rotation must be a (3, 3) matrix, got shape {r.shape}")
        n_rays = self._origins_cam.shape[0]
        origins = self._origins_cam @ r  # rows: R^T o
        view = np.array([0.0, 0.0, -1.0]) @ r
        directions = np.broadcast_to(view, (n_rays, 3))
        locs, ray_idx, tri_idx = self._rt.intersects_location(
            origins, directions, multiple_hits=False)
        out = np.zeros((n_rays, len(self.channels)), dtype=np.float32)
        normals_out = np.zeros((n_rays, 3), dtype=np.float32)
        mask = np.zeros((n_rays,), dtype=np.float32)
        if len(ray_idx):
            normals = self.mesh.face_normals[tri_idx] @ r.T  # to camera frame
            normals = np.where(normals[:, 2:3] < 0, -normals, normals)
            normals_out[ray_idx] = normals
            mask[ray_idx] = 1.0
            for k, ch in enumerate(self.channels):
                if ch == "shade":
                    lam = np.clip(normals @ LIGHT_DIR, 0.0, None)
                    out[ray_idx, k] = 0.15 + 0.85 * lam
                else:
                    z = (locs @ r.T)[:, 2]  # camera-frame depth coordinate
                    out[ray_idx, k] = np.clip((z + 1.0) / 2.0, 0.0, 1.0)
        s = self.size
        return dict(image=out.reshape(s, s, len(self.channels)),
                    normals=normals_out.reshape(s, s, 3), mask=mask.reshape(s, s))

    def render_many(self, rotations):
        """``(n, size, size, channels)`` for rotation matrices ``(n, 3, 3)``."""
        return np.stack([self.render(r) for r in rotations]) if len(rotations) else \
            np.zeros((0, self.size, self.size, len(self.channels)), np.float32)
