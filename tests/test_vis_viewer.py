"""The web viewer (pcgrasp.vis.viewer, ``pcgrasp show ... --serve``).

* without viser, ``serve`` fails with the one-line install hint; ``import pcgrasp.vis.viewer`` works;
* the initial view follows the picture's OpenCV camera (no viser needed);
* ``serve(block=False)`` listens on 127.0.0.1 only, serves viser's client page, and stops;
* in headless Chromium (/usr/bin/chromium; ``tools/install-chromium.sh`` installs it) the page
  connects, receives the scene and draws it: a red and a green box appear where the camera
  projects them, and are absent when the picture has no meshes.

The browser is driven over the DevTools protocol (a websocket client from the ``websockets``
package, which viser depends on): it loads the page and screenshots it repeatedly until the scene
has arrived, so slow machines only take longer, within a hard deadline. Chromium runs with a fresh
profile, software WebGL (SwiftShader) and its background network features off; the process group
is killed at the end whatever happens.
"""
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from pcgrasp.vis.picture import Camera, Mesh, Picture

CHROMIUM = os.environ.get("PCGRASP_CHROMIUM", "/usr/bin/chromium")
W, H = 800, 600  # browser viewport; the picture's camera is 640 x 480 (same aspect, scale 1.25)
BROWSER_DEADLINE_S = 75  # the whole browser test, start to finish (typically ~15 s)

# no proxy for loopback requests, whatever the environment says
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _box(center, size, color, name):
    """An axis-aligned box mesh (12 triangles, outward normals)."""
    c, h = np.asarray(center, float), np.asarray(size, float) / 2
    v = c + h * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    f = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                  [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return Mesh(v, f, np.array(color, np.uint8), name)


RED_CENTER, GREEN_CENTER = (-0.12, -0.12, 0.06), (0.12, -0.12, 0.06)  # below the GUI panel on screen


def _camera():
    """A 640 x 480 camera at (0, -0.6, 0.5) looking at the origin, image x along world +x
    (OpenCV axes as columns of the camera-to-world extrinsic)."""
    t = np.array([0.0, -0.6, 0.5])
    z = -t / np.linalg.norm(t)
    x = np.array([1.0, 0.0, 0.0])
    y = np.cross(z, x)
    E = np.eye(4)
    E[:3, 0], E[:3, 1], E[:3, 2], E[:3, 3] = x, y, z, t
    K = np.array([[600.0, 0, 320], [0, 600.0, 240], [0, 0, 1]])
    return Camera(E, K, 640, 480)


def _picture(with_meshes):
    """A grey floor of points (z = 0) and, optionally, a red and a green 12 cm box on it."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.35, 0.35, (20000, 2))
    pts = np.c_[xy, np.zeros(len(xy))]
    cols = np.full((len(pts), 3), 128, np.uint8)
    meshes = [_box(RED_CENTER, [0.12] * 3, [255, 0, 0], "grasp 0 score 0.90"),
              _box(GREEN_CENTER, [0.12] * 3, [0, 255, 0], "grasp 1/score 0.40")] if with_meshes else []
    # the legend's swatches are drawn in the GUI panel: no red or green there
    return Picture(pts, cols, meshes, _camera(), title="viewer test", legend={"points": (128, 128, 128)})


def _project(cam, p):
    q = cam.extrinsic[:3, :3].T @ (np.asarray(p, float) - cam.extrinsic[:3, 3])
    uv = (cam.intrinsic @ q)[:2] / q[2]
    return uv * (W / cam.width)


# ----------------------------------------------------------------------------- no viser needed

def test_missing_viser_gives_one_line_hint(monkeypatch):
    import pcgrasp.vis.viewer as viewer

    monkeypatch.setitem(sys.modules, "viser", None)  # makes `import viser` raise ImportError
    with pytest.raises(ImportError) as e:
        viewer.serve(_picture(False), port=0, block=False)
    assert str(e.value) == "the viewer needs viser: pip install 'pcgrasp[viewer]'"
    assert "\n" not in str(e.value)


def test_initial_view_follows_opencv_camera():
    from pcgrasp.vis.viewer import initial_view

    pic = _picture(True)
    v = initial_view(pic)
    E = pic.camera.extrinsic
    np.testing.assert_allclose(v["position"], E[:3, 3])
    np.testing.assert_allclose(v["up"], -E[:3, 1])  # image up is the camera's -y
    d = v["look_at"] - v["position"]
    np.testing.assert_allclose(d / np.linalg.norm(d), E[:3, 2], atol=1e-9)  # looks along +z
    assert abs(np.linalg.norm(d) - np.linalg.norm(E[:3, 3])) < 0.05  # orbit centre ~ the floor's middle
    assert v["fov"] == pytest.approx(2 * np.arctan(240 / 600))  # vertical field of view
    no_cam = initial_view(Picture(pic.points, pic.colors, pic.meshes, None))
    np.testing.assert_allclose(no_cam["look_at"], [0, 0, 0.06], atol=0.03)
    np.testing.assert_allclose(no_cam["up"], [0, 0, 1])


# ----------------------------------------------------------------------------- the server

def _listening_addresses(port):
    """Local addresses of the TCP sockets listening on ``port`` (Linux /proc/net)."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/net/{name}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            addr, p = cols[1].split(":")
            if cols[3] == "0A" and int(p, 16) == port:  # 0A: LISTEN
                if name == "tcp":
                    found.append(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
                else:
                    found.append("ipv6:" + addr)
    return found


def test_serve_listens_on_loopback_only_and_serves_client():
    pytest.importorskip("viser")
    import inspect

    from pcgrasp.vis.viewer import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    viewer = serve(_picture(True), port=0, block=False)
    try:
        port = viewer.port
        assert port > 0 and viewer.url == f"http://127.0.0.1:{port}/"
        if os.path.exists("/proc/net/tcp"):
            assert _listening_addresses(port) == ["127.0.0.1"]
        with _http.open(viewer.url, timeout=20) as r:
            assert r.status == 200
            assert "text/html" in r.headers.get("Content-Type", "")
            body = r.read()
        assert body.lstrip().lower().startswith(b"<!doctype html") and b"<script" in body
        # the scene tree names one node per mesh; '/' in a mesh name must not nest nodes
        names = [h.name for h in viewer.handles["meshes"]]
        assert names == ["/meshes/000 grasp 0 score 0.90", "/meshes/001 grasp 1_score 0.40"]
        assert viewer.handles["points"] is not None
    finally:
        viewer.stop()
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        _http.open(viewer.url, timeout=5).read()


# The child restores Python's SIGINT handler first: a job started in the background by a
# non-interactive shell (a CI runner's `cmd &`) runs with SIGINT ignored, and exec keeps that, so
# the child would never see the Ctrl+C a terminal user sends to a foreground viewer.
_BLOCKING = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from pcgrasp.vis.picture import Picture
from pcgrasp.vis.viewer import serve
serve(Picture(np.random.default_rng(0).random((100, 3)), np.zeros((100, 3), np.uint8), title="t"), port=0)
print("stopped", flush=True)
"""


def test_serve_blocks_until_ctrl_c():
    """What the CLI does: one line with the URL, serving until SIGINT, then a clean exit."""
    pytest.importorskip("viser")
    import selectors

    proc = subprocess.Popen([sys.executable, "-c", _BLOCKING], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=90), "serve() printed nothing in 90 s"
        line = proc.stdout.readline()
        assert line.startswith("pcgrasp viewer: open http://127.0.0.1:"), line
        url = line.split()[3]
        with _http.open(url, timeout=20) as r:
            assert r.status == 200
        os.kill(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
        assert rest.strip() == "stopped", rest  # nothing else printed (viser's own banners are muted)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


_CTRL_C_ON_ANOTHER_THREAD = """
import signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from pcgrasp.vis.picture import Picture
from pcgrasp.vis.viewer import serve


def poke():  # a Ctrl+C that the kernel delivers to a thread other than the main one
    time.sleep(3)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)


threading.Thread(target=poke, daemon=True).start()
serve(Picture(np.random.default_rng(0).random((100, 3)), np.zeros((100, 3), np.uint8), title="t"), port=0)
print("stopped", flush=True)
"""


def test_serve_stops_when_ctrl_c_lands_on_another_thread():
    """A process-wide SIGINT may be delivered to any thread (the server has several); Python only sets
    its flag there, so the blocking loop must wake often enough to see it (it once slept an hour)."""
    pytest.importorskip("viser")
    r = subprocess.run([sys.executable, "-c", _CTRL_C_ON_ANOTHER_THREAD], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "stopped", r.stdout


# ----------------------------------------------------------------------------- the browser

class _DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url):
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=None, open_timeout=20)
        self.next_id = 0

    def call(self, method, timeout=30, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"DevTools {method}: no answer in {timeout} s")
            msg = json.loads(self.ws.recv(timeout=left))
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools {method}: {msg['error']}")
                return msg.get("result", {})

    def screenshot(self):
        from PIL import Image

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self):
        self.ws.close()


def chromium_command(user_data_dir, width=W, height=H):
    """Headless Chromium with a DevTools port, software WebGL and no background network use."""
    return [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",  # WebGL on the CPU
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-extensions",
        "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
        f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank",
    ]


def _masks(img):
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r > 100) & (g < 60) & (b < 60) & (r > 2 * np.maximum(g, b))
    green = (g > 100) & (r < 80) & (b < 80) & (g > 2 * np.maximum(r, b))
    grey = (abs(r - g) < 12) & (abs(g - b) < 12) & (r > 80) & (r < 180)  # the floor's points
    return red, green, grey


def _wait_for(dt, url, done, deadline, save_to):
    """Load ``url`` and screenshot until ``done(img)`` or the deadline; the last screenshot."""
    dt.call("Page.navigate", url=url)
    img = None
    while time.monotonic() < deadline:
        time.sleep(1.0)
        img = dt.screenshot()
        if done(img):
            time.sleep(1.0)  # a few more frames: everything that will arrive has arrived
            img = dt.screenshot()
            break
    if img is not None:
        from PIL import Image

        Image.fromarray(img).save(save_to)
    return img


def test_browser_shows_scene(tmp_path):
    pytest.importorskip("viser")
    pytest.importorskip("websockets.sync.client")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} is not installed (bash tools/install-chromium.sh installs it)")
    from pcgrasp.vis.viewer import serve

    t0 = time.monotonic()
    deadline = t0 + BROWSER_DEADLINE_S
    profile = tmp_path / "chromium-profile"
    log = open(tmp_path / "chromium.log", "wb")
    # the browser is not under test: `make sanitize` preloads ASan/UBSan into this process, and
    # Chromium inheriting them never opened its DevTools port
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
    proc = subprocess.Popen(chromium_command(profile), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    viewers, dt = [], None
    try:
        viewers = [serve(_picture(True), port=0, block=False), serve(_picture(False), port=0, block=False)]
        active = profile / "DevToolsActivePort"
        while not active.exists() or len(active.read_text().split()) < 2:
            assert proc.poll() is None, f"chromium exited ({proc.returncode}); see {tmp_path / 'chromium.log'}"
            assert time.monotonic() < t0 + 60, "chromium did not open its DevTools port in 60 s"
            time.sleep(0.2)
        devtools_port = int(active.read_text().split()[0])
        pages = []
        while not pages:  # the about:blank tab
            assert time.monotonic() < t0 + 40, "chromium opened no page in 40 s"
            with _http.open(f"http://127.0.0.1:{devtools_port}/json/list", timeout=20) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
            time.sleep(0.1)
        dt = _DevTools(pages[0]["webSocketDebuggerUrl"])
        dt.call("Emulation.setDeviceMetricsOverride", width=W, height=H, deviceScaleFactor=1, mobile=False)
        t_browser = time.monotonic() - t0

        def counts(img):
            return [int(m.sum()) for m in _masks(img)]

        full = _wait_for(dt, viewers[0].url,
                         lambda im: min(counts(im)[:2]) > 2000 and counts(im)[2] > 20000,
                         deadline, tmp_path / "with_meshes.png")
        t_full = time.monotonic() - t0
        empty = _wait_for(dt, viewers[1].url, lambda im: counts(im)[2] > 20000,
                          deadline, tmp_path / "without_meshes.png")
        elapsed = time.monotonic() - t0
        print(f"browser test: chromium ready {t_browser:.1f} s, scene drawn {t_full:.1f} s, "
              f"empty scene drawn {elapsed:.1f} s")
    finally:
        if dt is not None:
            try:
                dt.close()
            except Exception:
                pass
        try:  # the browser first: the servers then have no connection left to wind down
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        try:  # helpers (GPU, renderer processes) still winding down
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for v in viewers:
            v.stop()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)

    where = f"(screenshots in {tmp_path}, {elapsed:.0f} s)"
    assert full is not None and empty is not None, f"no screenshot {where}"
    assert full.shape == (H, W, 3)
    assert len(np.unique(full.reshape(-1, 3), axis=0)) > 50, f"the page is blank {where}"
    red, green, grey = _masks(full)
    assert grey.sum() > 20000, f"the points were not drawn {where}"
    assert red.sum() > 2000 and green.sum() > 2000, \
        f"grasp boxes missing: {red.sum()} red, {green.sum()} green pixels {where}"
    # the boxes are where the picture's camera projects them (the initial view is that camera)
    cam = _camera()
    for mask, center, name in ((red, RED_CENTER, "red"), (green, GREEN_CENTER, "green")):
        corners = np.array(center) + 0.06 * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        uv = np.array([_project(cam, c) for c in corners])
        (u0, v0), (u1, v1) = uv.min(0), uv.max(0)
        vs, us = np.nonzero(mask)
        inside = (us >= u0 - 10) & (us <= u1 + 10) & (vs >= v0 - 10) & (vs <= v1 + 10)
        box = f"[{u0:.0f}, {u1:.0f}] x [{v0:.0f}, {v1:.0f}]"
        assert inside.mean() > 0.95, f"{name} pixels outside the box's projection {box} {where}"
        assert len(us) > 0.3 * (u1 - u0) * (v1 - v0), f"{name} box covers little of its projection {box} {where}"
    assert _project(cam, RED_CENTER)[0] < _project(cam, GREEN_CENTER)[0]  # red left of green
    red0, green0, grey0 = _masks(empty)
    assert grey0.sum() > 20000, f"the points were not drawn without meshes {where}"
    assert red0.sum() < 300 and green0.sum() < 300, \
        f"red/green without meshes: {red0.sum()}, {green0.sum()} pixels {where}"
