"""The interactive web viewer behind ``pcgrasp show ... --serve``.

It draws a :class:`pcgrasp.vis.picture.Picture` with `viser <https://viser.studio>`_ (the optional
extra ``pip install 'pcgrasp[viewer]'``): a small web server in this process that serves viser's
own bundled browser client (no internet access needed, also not by the browser) and streams the
scene to it over a websocket. Open the printed URL in a browser; orbit with the left mouse
button, pan with the right one, zoom with the wheel.

What is shown:

* the coloured points (scene node ``/points``);
* every mesh as its own scene node ``/meshes/NNN <mesh.name>`` (e.g. ``/meshes/003 grasp 3 score
  0.91``), so viser's scene tree lists the grasps one by one;
* a GUI panel headed by the picture's title, with its legend (label -> colour swatch), a
  point-size slider and checkboxes that show or hide the points and the meshes (no share
  button: viser's sharing goes through a public relay server).

Frames: the picture's single world frame (metres) is viser's world frame, unchanged. New browser
tabs start at ``picture.camera``'s pose, i.e. the view the PNG renderer draws: the camera sits at
the translation of the camera-to-world ``extrinsic`` and looks along its +z column; the image's
up is the camera's -y column (OpenCV axes: x right, y down, z forward), which is also made
viser's scene up direction, so orbiting keeps that view upright. The vertical field of view is
``2 atan(height / (2 fy))``; the orbit centre is the point on the viewing axis at the median depth
of the points (and mesh vertices) in front of the camera. Without a camera the view looks at the
middle of the scene's bounding box, with +z up.

viser is imported only when :func:`serve` runs, so ``import pcgrasp.vis.viewer`` works without it.
"""
import contextlib
import html
import io
import logging
import math
import re
import time

import numpy as np

VISER_MISSING = "the viewer needs viser: pip install 'pcgrasp[viewer]'"


def _import_viser():
    """viser, or an ImportError whose message is the one-line install hint."""
    try:
        import viser
    except ImportError as e:
        raise ImportError(VISER_MISSING) from e
    return viser


class Viewer:
    """A running viewer: ``server`` (the ``viser.ViserServer``), ``host``, ``port`` (the port
    actually bound: with ``port=0``, or when the asked-for port was taken, viser binds another)
    and ``url``, the address to open in a browser; ``handles`` holds the scene handles
    (``points``: the point cloud's or None, ``meshes``: one per mesh, in order). ``stop()``
    (alias ``close()``) shuts the server down; it is also a context manager."""

    def __init__(self, server, host, port):
        self.server = server
        self.host = host
        self.port = port
        self.url = _url(host, port)
        self.handles = dict(points=None, meshes=[])
        self._stopped = False

    def stop(self):
        """Stop the web server (idempotent)."""
        if not self._stopped:
            self._stopped = True
            with contextlib.redirect_stdout(io.StringIO()):  # viser's "(viser) Server stopped"
                self.server.stop()

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"Viewer({self.url}{', stopped' if self._stopped else ''})"


def _url(host, port):
    """The URL a browser on this machine can open: a wildcard bind address becomes loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _node_name(index, name):
    """A viser scene-node name for mesh ``index``: '/' would nest nodes, so it and any other
    unusual character becomes '_'."""
    clean = re.sub(r"[^A-Za-z0-9 _.,:=+()#-]", "_", str(name)).strip()
    return f"/meshes/{index:03d}" + (f" {clean}" if clean else "")


class _QuietHandshakes(logging.Filter):
    """Drops websockets' "opening handshake failed" tracebacks: browsers open spare (speculative)
    connections that close without a request, which is harmless."""

    def filter(self, record):
        return record.getMessage() != "opening handshake failed"


def _quiet_websockets():
    log = logging.getLogger("websockets.server")
    if not any(isinstance(f, _QuietHandshakes) for f in log.filters):
        log.addFilter(_QuietHandshakes())


def _point_spacing(points):
    """A typical distance between neighbouring points (the median nearest-neighbour distance of
    up to 2000 sampled points), or None for fewer than two distinct points."""
    if len(points) < 2:
        return None
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    tree = cKDTree(points)
    query = points if len(points) <= 2000 else points[rng.choice(len(points), 2000, replace=False)]
    d, _ = tree.query(query, k=2)
    d = d[:, 1][np.isfinite(d[:, 1]) & (d[:, 1] > 0)]
    return float(np.median(d)) if len(d) else None


def initial_view(picture):
    """The initial browser view for ``picture``, in its world frame: a dict with ``position``,
    ``look_at`` and ``up`` (3-vectors) and ``fov`` (vertical field of view, radians), as
    described in the module docstring."""
    pts = [np.asarray(picture.points, dtype=np.float64).reshape(-1, 3)]
    pts += [np.asarray(m.vertices, dtype=np.float64).reshape(-1, 3) for m in picture.meshes]
    allp = np.concatenate(pts, 0)
    allp = allp[np.isfinite(allp).all(1)]
    cam = picture.camera
    if cam is not None:
        E = np.asarray(cam.extrinsic, dtype=np.float64)
        R, t = E[:3, :3], E[:3, 3]
        forward = R[:, 2] / np.linalg.norm(R[:, 2])
        up = -R[:, 1] / np.linalg.norm(R[:, 1])
        depth = (allp - t) @ forward
        depth = depth[depth > 1e-6]
        dist = float(np.median(depth)) if len(depth) else 1.0
        fy = float(np.asarray(cam.intrinsic, dtype=np.float64)[1, 1])
        fov = 2.0 * math.atan2(cam.height / 2.0, fy) if fy > 0 and cam.height > 0 else math.radians(60)
        return dict(position=t, look_at=t + dist * forward, up=up, fov=fov)
    up = np.array([0.0, 0.0, 1.0])
    if len(allp) == 0:
        return dict(position=np.array([1.0, 1.0, 1.0]), look_at=np.zeros(3), up=up, fov=math.radians(60))
    lo, hi = allp.min(0), allp.max(0)
    centre = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-3)
    direction = np.array([1.0, -1.0, 0.8]) / np.linalg.norm([1.0, -1.0, 0.8])
    return dict(position=centre + 2.2 * radius * direction, look_at=centre, up=up, fov=math.radians(60))


def _legend_html(title, legend):
    """The panel's header: the title and one colour swatch per legend entry."""
    parts = []
    if title:
        parts.append(f"<div style='font-weight:600;margin-bottom:4px'>{html.escape(str(title))}</div>")
    for label, rgb in legend.items():
        r, g, b = (int(c) for c in np.asarray(rgb).reshape(3))
        parts.append(
            "<div style='display:flex;align-items:center;gap:6px;font-size:0.85em'>"
            f"<span style='display:inline-block;width:14px;height:14px;border-radius:2px;"
            f"background:rgb({r},{g},{b})'></span>{html.escape(str(label))}</div>")
    return "<div style='padding:4px 0'>" + "".join(parts) + "</div>" if parts else ""


def build_scene(server, picture, point_size=None):
    """Add ``picture`` to a running ``viser.ViserServer``: points, meshes, initial camera, the
    title/legend panel and the GUI controls (see the module docstring). Returns a dict of the
    scene handles (``points``: the point-cloud handle or None, ``meshes``: list of mesh handles).
    ``point_size`` is in metres (world units); default 1.5x the typical point spacing."""
    points = np.asarray(picture.points, dtype=np.float32).reshape(-1, 3)
    if picture.colors is None:
        colors = np.full((len(points), 3), 160, np.uint8)
    else:
        colors = np.asarray(picture.colors, dtype=np.uint8).reshape(-1, 3)
    if len(colors) != len(points):
        raise ValueError(f"picture has {len(points)} points but {len(colors)} colours")
    finite = np.isfinite(points).all(1)
    points, colors = points[finite], colors[finite]

    # no share button: sharing would expose the scene through viser's public relay server
    server.gui.configure_theme(show_share_button=False)
    server.gui.set_panel_label("pcgrasp")  # the title goes in the panel body, where it can wrap

    view = initial_view(picture)
    server.scene.set_up_direction(tuple(float(x) for x in view["up"]))
    server.initial_camera.fov = float(view["fov"])
    server.initial_camera.position = tuple(float(x) for x in view["position"])
    server.initial_camera.look_at = tuple(float(x) for x in view["look_at"])
    server.initial_camera.up = tuple(float(x) for x in view["up"])

    if point_size is None:
        spacing = _point_spacing(points.astype(np.float64))
        point_size = float(np.clip(1.5 * spacing, 2e-4, 0.05)) if spacing else 0.003
    cloud = None
    if len(points):
        cloud = server.scene.add_point_cloud(
            "/points", points, colors, point_size=point_size, point_shape="circle",
            precision="float32", point_shading="flat")

    mesh_handles = []
    for i, m in enumerate(picture.meshes):
        color = tuple(int(c) for c in np.asarray(m.color).reshape(3))
        mesh_handles.append(server.scene.add_mesh_simple(
            _node_name(i, m.name), np.asarray(m.vertices, dtype=np.float32),
            np.asarray(m.faces, dtype=np.uint32), color=color, side="double"))

    header = _legend_html(picture.title, picture.legend or {})
    if header:
        server.gui.add_html(header)
    if cloud is not None:
        size = server.gui.add_slider("point size (mm)", min=0.1, max=20.0, step=0.1,
                                     initial_value=float(np.clip(round(point_size * 1000, 1), 0.1, 20.0)))
        show_points = server.gui.add_checkbox("points", True)

        @size.on_update
        def _(_event):
            cloud.point_size = size.value / 1000.0

        @show_points.on_update
        def _(_event):
            cloud.visible = show_points.value
    if mesh_handles:
        show_meshes = server.gui.add_checkbox(f"grasps / meshes ({len(mesh_handles)})", True)

        @show_meshes.on_update
        def _(_event):
            for h in mesh_handles:
                h.visible = show_meshes.value
    return dict(points=cloud, meshes=mesh_handles)


def serve(picture, host="127.0.0.1", port=8080, block=True, point_size=None):
    """Serve ``picture`` in viser's web viewer on ``host``:``port``.

    ``host`` defaults to loopback (127.0.0.1: only this machine can connect; pass e.g. 0.0.0.0
    deliberately to expose it). ``port=0`` lets the OS choose a free port; if the asked-for port
    is taken viser takes the next free one, so use the returned ``url``/``port``.
    ``point_size`` is in metres (default: from the point spacing; a GUI slider changes it).

    ``block=True`` (the CLI): prints the URL and serves until Ctrl+C, then stops the server and
    returns the stopped :class:`Viewer`. ``block=False``: returns the running :class:`Viewer`
    at once (``viewer.url``, ``viewer.server``, ``viewer.stop()``).

    Raises ImportError with the one-line message ``VISER_MISSING`` when viser is not installed.
    """
    viser = _import_viser()
    _quiet_websockets()
    with contextlib.redirect_stdout(io.StringIO()):  # viser's URL banner; we print one line below
        server = viser.ViserServer(host=host, port=port, verbose=False)
    viewer = Viewer(server, host, server.get_port())
    try:
        viewer.handles = build_scene(server, picture, point_size=point_size)
    except BaseException:
        viewer.stop()
        raise
    if not block:
        return viewer
    print(f"pcgrasp viewer: open {viewer.url} in a browser (Ctrl+C stops it)", flush=True)
    try:
        while True:
            # short sleeps: a Ctrl+C that the kernel hands to one of the server's threads only sets
            # Python's flag; the main thread acts on it when it next wakes (a 1 h sleep hung a CI run)
            time.sleep(0.25)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    return viewer
