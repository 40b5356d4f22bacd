"""Draw docs/grid_layout.png: the project's map layout on the DH grid.

Run from the repository root: ``python docs/make_layout_figure.py``
(matplotlib, NumPy; no TensorFlow). Panels:
  a) a map as the array ``maps[0, :, :, 0]`` (axis 1 = azimuth k, axis 2 = polar j);
  b) the same samples on the sphere, with (k, j) of a few points;
  c) the same map in pyshtools / torch-harmonics orientation (polar first): the transpose.
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

N = 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grid_layout.png")


def grid(n):
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")  # (azimuth, polar)
    polar, azimuth = np.pi * j / n, 2 * np.pi * k / n
    xyz = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)], -1)
    return k, j, polar, azimuth, xyz


def main(path=OUT):
    k, j, polar, azimuth, xyz = grid(N)
    f = xyz[..., 2] + 0.6 * xyz[..., 0]  # z + 0.6 x: north pole and +x stand out
    fig = plt.figure(figsize=(14, 5.8))

    ax = fig.add_subplot(1, 3, 1)
    ax.imshow(f, cmap="viridis", origin="upper")
    ax.set_xticks(range(N), [f"{j}\n{180 * j / N:g}°" for j in range(N)], fontsize=7)
    ax.set_yticks(range(N), [f"{k}: {360 * k / N:g}°" for k in range(N)], fontsize=7)
    ax.set_xlabel("axis 2 = polar index j (colatitude πj/n)\nj = 0 north pole; south pole not sampled")
    ax.set_ylabel("axis 1 = azimuth index k (2πk/n)")
    ax.set_title("a) maps[b, k, j, c]: (batch, azimuth, polar, channels)", fontsize=10)

    ax = fig.add_subplot(1, 3, 2, projection="3d")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 40), np.linspace(0, np.pi, 20))
    ax.plot_wireframe(np.sin(v) * np.cos(u), np.sin(v) * np.sin(u), np.cos(v), color="0.85", lw=0.4)
    ax.scatter(*xyz.reshape(-1, 3).T, c=f.reshape(-1), cmap="viridis", s=25, depthshade=False)
    for kk, jj in [(0, 0), (0, 2), (0, 4), (2, 4), (4, 4), (0, 7)]:
        ax.text(*(1.12 * xyz[kk, jj]), f"[{kk},{jj}]", fontsize=7)
    for vec, name in [((1.5, 0, 0), "x"), ((0, 1.5, 0), "y"), ((0, 0, 1.5), "z")]:
        ax.plot([0, vec[0]], [0, vec[1]], [0, vec[2]], color="k", lw=0.8)
        ax.text(*vec, name)
    ax.set_box_aspect((1, 1, 1), zoom=1.5)
    ax.set_axis_off()
    ax.set_title("b) point [k, j] = (sin p cos a, sin p sin a, cos p)\n"
                 "p = πj/n, a = 2πk/n (n = 8 shown)", fontsize=10)

    ax = fig.add_subplot(1, 3, 3)
    ax.imshow(f.T, cmap="viridis", origin="upper")
    ax.set_xticks(range(N), [str(k) for k in range(N)], fontsize=7)
    ax.set_yticks(range(N), [str(j) for j in range(N)], fontsize=7)
    ax.set_xlabel("longitude (azimuth) k")
    ax.set_ylabel("latitude row (polar) j, from the north pole")
    ax.set_title("c) pyshtools / torch-harmonics / e3nn: polar first\n"
                 "= layouts.to_pyshtools(map) = map.T", fontsize=10)

    fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.17, wspace=0.25)
    fig.savefig(path, dpi=90)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
