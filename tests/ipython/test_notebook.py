"""Tests for ipython_ext.notebook: which notebook is this kernel running, and its project root.

Every test runs with HOME, the Jupyter folders and cwd inside tmp_path; the only
servers started listen on 127.0.0.1 and are stopped in teardown.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from ipython_ext import headless
from ipython_ext import notebook as nb

KERNEL_ID = "5f1c7a52-0c1e-4bb3-9d3e-1f0e8c2b7a11"
TOKEN = "s3cret-token"

_real_connection_file = nb._connection_file


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """HOME, Jupyter dirs and cwd in tmp_path; no session hints; not inside a kernel."""
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    work = tmp_path / "work"
    for d in (home, runtime, work):
        d.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-runtime"))
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(nb, "_connection_file", lambda: None)
    monkeypatch.setattr(nb, "_ipython_user_ns", lambda: None)
    monkeypatch.chdir(work)
    return {"home": home, "runtime": runtime, "work": work.resolve()}


@pytest.fixture
def no_outer_marker(tmp_path):
    """Skip when some folder above tmp_path is itself a project (results would differ)."""
    root, how = nb.find_project_root(tmp_path)
    if how != "notebook-folder":
        pytest.skip(f"{root} above tmp_path has project marker {how}")


def make_file(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    # set per server in the fixture
    sessions: object = []
    raw_body: bytes | None = None
    token: str = TOKEN
    calls: list = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.calls.append((self.path, self.headers.get("Authorization")))
        if self.token and self.headers.get("Authorization") != f"token {self.token}":
            self.send_response(403)
            self.end_headers()
            return
        if self.path.split("?")[0].rstrip("/").endswith("/api/sessions"):
            body = self.raw_body if self.raw_body is not None else json.dumps(self.sessions).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):  # keep pytest output quiet
        pass


@pytest.fixture
def http_server():
    """Start tiny /api/sessions servers on 127.0.0.1:0; all are stopped in teardown."""
    started = []

    def start(sessions=(), raw_body=None, token=TOKEN):
        handler = type(
            "Handler",
            (_Handler,),
            {"sessions": list(sessions), "raw_body": raw_body, "token": token, "calls": []},
        )
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, thread))
        server.calls = handler.calls
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def hanging_server():
    """A socket on 127.0.0.1 that completes TCP connections but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def in_kernel(isolated, monkeypatch):
    """Pretend to run in kernel KERNEL_ID: its connection file lives in the runtime dir."""
    cf = make_file(isolated["runtime"] / f"kernel-{KERNEL_ID}.json", "{}")
    monkeypatch.setattr(nb, "_connection_file", lambda: str(cf))
    return cf


def write_server_info(runtime: Path, name: str, **info) -> Path:
    info.setdefault("token", TOKEN)
    info.setdefault("pid", os.getpid())
    path = runtime / name
    path.write_text(json.dumps(info))
    return path


def session(kernel_id: str, path: str, legacy: bool = False) -> dict:
    if legacy:
        return {"id": "s1", "notebook": {"path": path, "name": Path(path).name}, "kernel": {"id": kernel_id}}
    return {"id": "s1", "path": path, "name": Path(path).name, "type": "notebook", "kernel": {"id": kernel_id}}


# ------------------------------------------------------------------ resolution order


def test_explicit_absolute(tmp_path):
    target = make_file(tmp_path / "proj" / "a.ipynb")
    loc = nb.locate_notebook({}, explicit=str(target))
    assert loc.notebook == target.resolve()
    assert loc.how == "explicit"


def test_explicit_relative_is_against_cwd(isolated):
    target = make_file(isolated["work"] / "sub" / "b.ipynb")
    loc = nb.locate_notebook({}, explicit=Path("sub") / "b.ipynb")
    assert loc.notebook == target
    assert loc.notebook.is_absolute()
    assert loc.how == "explicit"


def test_explicit_beats_all_other_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", _must_not_be_called)
    ns = {"__vsc_ipynb_file__": str(tmp_path / "vsc.ipynb"), "__session__": str(tmp_path / "sess.ipynb")}
    env = {"JPY_SESSION_NAME": str(tmp_path / "env.ipynb")}
    loc = nb.locate_notebook(ns, explicit=tmp_path / "mine.ipynb", environ=env)
    assert (loc.notebook, loc.how) == ((tmp_path / "mine.ipynb").resolve(), "explicit")


def test_vscode_beats_env_session_and_server(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", _must_not_be_called)
    ns = {"__vsc_ipynb_file__": str(tmp_path / "vsc.ipynb"), "__session__": str(tmp_path / "sess.ipynb")}
    env = {"JPY_SESSION_NAME": str(tmp_path / "env.ipynb")}
    loc = nb.locate_notebook(ns, environ=env)
    assert (loc.notebook, loc.how) == ((tmp_path / "vsc.ipynb").resolve(), "vscode")


def test_server_beats_env_and_session_it_follows_renames(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout: tmp_path / "renamed.ipynb")
    ns = {"__session__": str(tmp_path / "Untitled.ipynb")}
    env = {"JPY_SESSION_NAME": str(tmp_path / "Untitled.ipynb")}
    loc = nb.locate_notebook(ns, environ=env)
    assert (loc.notebook, loc.how) == (tmp_path / "renamed.ipynb", "jupyter-server")


def test_env_beats_session(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout: None)
    ns = {"__session__": str(tmp_path / "sess.ipynb")}
    env = {"JPY_SESSION_NAME": str(tmp_path / "env.ipynb")}
    loc = nb.locate_notebook(ns, environ=env)
    assert (loc.notebook, loc.how) == ((tmp_path / "env.ipynb").resolve(), "JPY_SESSION_NAME")


def test_ptd_notebook_beats_every_hint_but_the_explicit_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", _must_not_be_called)
    ns = {"__vsc_ipynb_file__": str(tmp_path / "vsc.ipynb")}
    env = {"PTD_NOTEBOOK": str(tmp_path / "told.ipynb"), "JPY_SESSION_NAME": str(tmp_path / "env.ipynb")}
    assert nb.locate_notebook(ns, environ=env).how == "PTD_NOTEBOOK"
    assert nb.locate_notebook(ns, explicit=tmp_path / "x.ipynb", environ=env).how == "explicit"


def test_ptd_notebook_relative_to_the_notebook_folder_nbconvert_runs_in(isolated, monkeypatch):
    target = make_file(isolated["work"] / "notebooks" / "exp.ipynb")
    monkeypatch.chdir(target.parent)  # nbconvert starts the kernel in the notebook's folder
    loc = nb.locate_notebook({}, environ={"PTD_NOTEBOOK": "notebooks/exp.ipynb"})
    assert (loc.notebook, loc.how) == (target.resolve(), "PTD_NOTEBOOK")


# ------------------------------------------------------------------ the launching process


def _launched_by(monkeypatch, argv, cwd):
    monkeypatch.setattr(headless, "_launcher_command", lambda: (argv, [cwd]))
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout: None)


def _notebook_file(path: Path, cells, **metadata) -> Path:
    import nbformat

    document = nbformat.v4.new_notebook()
    document.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    document.metadata.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(document, str(path))
    return path


def test_the_launcher_notebook_holding_the_kernels_cells_wins(isolated, monkeypatch):
    work = isolated["work"]
    a = _notebook_file(work / "a.ipynb", ["x = 1", "print(x)"])
    _notebook_file(work / "b.ipynb", ["y = 2"])
    _launched_by(monkeypatch, ["jupyter-nbconvert", "--execute", "b.ipynb", "a.ipynb"], work)
    loc = nb.locate_notebook({"In": ["", "x = 1", "print(x)\n"]}, environ={})
    assert (loc.notebook, loc.how) == (a.resolve(), "launcher")


def test_a_papermill_output_stands_for_its_input(isolated, monkeypatch):
    work = isolated["work"]
    source = _notebook_file(work / "nbs" / "exp.ipynb", ["x = 1"])
    _notebook_file(work / "out.ipynb", ["x = 1"], papermill={"input_path": "nbs/exp.ipynb"})
    _launched_by(monkeypatch, ["papermill", "nbs/exp.ipynb", "out.ipynb"], work)
    loc = nb.locate_notebook({"In": ["", "x = 1"]}, environ={})
    assert (loc.notebook, loc.how) == (source.resolve(), "launcher")


def test_papermill_cwd_names_are_relative_to_where_it_started(isolated, monkeypatch, tmp_path):
    work = isolated["work"]
    source = _notebook_file(work / "nbs" / "exp.ipynb", ["x = 1"])
    elsewhere = tmp_path / "run-here"
    elsewhere.mkdir()
    argv = ["papermill", "--cwd", str(elsewhere), "nbs/exp.ipynb", "out.ipynb"]
    monkeypatch.setattr(headless, "_launcher_command", lambda: (argv, [elsewhere, work]))
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout: None)
    loc = nb.locate_notebook({"In": ["", "x = 1"]}, environ={})
    assert (loc.notebook, loc.how) == (source.resolve(), "launcher")


def test_the_launcher_is_not_guessed_when_no_single_notebook_holds_the_cells(isolated, monkeypatch):
    work = isolated["work"]
    _notebook_file(work / "a.ipynb", ["x = 1"])
    _notebook_file(work / "b.ipynb", ["x = 1"])
    _launched_by(monkeypatch, ["jupyter-nbconvert", "--execute", "a.ipynb", "b.ipynb"], work)
    assert nb.locate_notebook({"In": ["", "x = 1"]}, environ={}).how == "cwd"  # a tie
    assert nb.locate_notebook({"In": ["", "z = 3"]}, environ={}).how == "cwd"  # typed elsewhere
    _launched_by(monkeypatch, ["python", "-m", "ipykernel_launcher"], work)
    assert nb.locate_notebook({"In": ["", "x = 1"]}, environ={}).how == "cwd"  # no notebook named


def test_env_is_read_from_os_environ_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "from-os.ipynb"))
    loc = nb.locate_notebook({})
    assert (loc.notebook, loc.how) == ((tmp_path / "from-os.ipynb").resolve(), "JPY_SESSION_NAME")


def test_environ_argument_replaces_os_environ(tmp_path, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "from-os.ipynb"))
    loc = nb.locate_notebook({}, environ={})
    assert (loc.notebook, loc.how) == (None, "cwd")


def test_env_absolute_is_accepted_even_if_missing(tmp_path):
    missing = tmp_path / "nowhere" / "gone.ipynb"
    loc = nb.locate_notebook({}, environ={"JPY_SESSION_NAME": str(missing)})
    assert (loc.notebook, loc.how) == (missing.resolve(), "JPY_SESSION_NAME")


def test_env_relative_existing_relative_to_cwd(isolated):
    target = make_file(isolated["work"] / "notebooks" / "exp.ipynb")
    loc = nb.locate_notebook({}, environ={"JPY_SESSION_NAME": "notebooks/exp.ipynb"})
    assert (loc.notebook, loc.how) == (target, "JPY_SESSION_NAME")


def test_env_relative_to_server_root_when_cwd_is_the_notebook_folder(isolated, monkeypatch):
    # Jupyter starts the kernel in the notebook's folder; the name is relative to the server root.
    folder = isolated["work"] / "proj" / "notebooks"
    target = make_file(folder / "exp.ipynb")
    monkeypatch.chdir(folder)
    loc = nb.locate_notebook({}, environ={"JPY_SESSION_NAME": "proj/notebooks/exp.ipynb"})
    assert (loc.notebook, loc.how) == (target, "JPY_SESSION_NAME")


def test_env_relative_missing_falls_through_to_session(tmp_path):
    ns = {"__session__": str(tmp_path / "sess.ipynb")}
    loc = nb.locate_notebook(ns, environ={"JPY_SESSION_NAME": "elsewhere/exp.ipynb"})
    assert (loc.notebook, loc.how) == ((tmp_path / "sess.ipynb").resolve(), "__session__")


def test_env_relative_missing_and_nothing_else_gives_cwd(isolated):
    loc = nb.locate_notebook({}, environ={"JPY_SESSION_NAME": "elsewhere/exp.ipynb"})
    assert (loc.notebook, loc.how) == (None, "cwd")


def test_session_absolute(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout: None)
    loc = nb.locate_notebook({"__session__": str(tmp_path / "s.ipynb")}, environ={})
    assert (loc.notebook, loc.how) == ((tmp_path / "s.ipynb").resolve(), "__session__")


def test_session_relative_existing(isolated):
    target = make_file(isolated["work"] / "s.ipynb")
    loc = nb.locate_notebook({"__session__": "s.ipynb"}, environ={})
    assert (loc.notebook, loc.how) == (target, "__session__")


def test_session_relative_missing_falls_through_to_server(tmp_path, monkeypatch):
    found = tmp_path / "srv.ipynb"
    monkeypatch.setattr(nb, "running_server_sessions_notebook", lambda timeout=1.0: found)
    loc = nb.locate_notebook({"__session__": "missing.ipynb"}, environ={})
    assert (loc.notebook, loc.how) == (found, "jupyter-server")


def test_bad_hint_values_are_ignored(isolated):
    ns = {"__vsc_ipynb_file__": 123, "__session__": ["not", "a", "path"]}
    loc = nb.locate_notebook(ns, environ={"JPY_SESSION_NAME": ""})
    assert (loc.notebook, loc.how) == (None, "cwd")


def test_user_ns_defaults_to_running_ipython(tmp_path, monkeypatch):
    monkeypatch.setattr(nb, "_ipython_user_ns", lambda: {"__vsc_ipynb_file__": str(tmp_path / "v.ipynb")})
    loc = nb.locate_notebook(environ={})
    assert (loc.notebook, loc.how) == ((tmp_path / "v.ipynb").resolve(), "vscode")


def test_cwd_fallback_without_marker(isolated, no_outer_marker):
    loc = nb.locate_notebook({}, environ={})
    assert loc == nb.NotebookLocation(None, "cwd", isolated["work"], "cwd")


def test_cwd_fallback_with_marker_above(isolated, monkeypatch):
    make_file(isolated["work"] / "pyproject.toml", "")
    deep = isolated["work"] / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    loc = nb.locate_notebook({}, environ={})
    assert loc == nb.NotebookLocation(None, "cwd", isolated["work"], "marker:pyproject.toml")


def _must_not_be_called(*args, **kwargs):
    raise AssertionError("a lower-priority source was consulted")


# -------------------------------------------------------------------- project root


@pytest.mark.parametrize("marker", nb.PROJECT_MARKERS)
def test_project_root_each_marker(tmp_path, marker):
    proj = tmp_path / "proj"
    if marker == ".git":
        (proj / ".git").mkdir(parents=True)
    else:
        make_file(proj / marker, "")
    notebook = make_file(proj / "notebooks" / "deep" / "exp.ipynb")
    assert nb.find_project_root(notebook) == (proj.resolve(), f"marker:{marker}")
    loc = nb.locate_notebook({}, explicit=notebook)
    assert (loc.project_root, loc.project_how) == (proj.resolve(), f"marker:{marker}")


def test_project_root_git_file_counts(tmp_path):
    # worktrees and submodules have a .git *file*
    make_file(tmp_path / "wt" / ".git", "gitdir: /elsewhere")
    notebook = make_file(tmp_path / "wt" / "n.ipynb")
    assert nb.find_project_root(notebook) == ((tmp_path / "wt").resolve(), "marker:.git")


def test_project_root_nearest_marker_wins(tmp_path):
    (tmp_path / "outer" / ".git").mkdir(parents=True)
    make_file(tmp_path / "outer" / "inner" / "setup.cfg", "")
    notebook = make_file(tmp_path / "outer" / "inner" / "nb" / "x.ipynb")
    assert nb.find_project_root(notebook) == ((tmp_path / "outer" / "inner").resolve(), "marker:setup.cfg")
    other = make_file(tmp_path / "outer" / "side" / "y.ipynb")
    assert nb.find_project_root(other) == ((tmp_path / "outer").resolve(), "marker:.git")


def test_project_root_marker_order_within_one_folder(tmp_path):
    make_file(tmp_path / "p" / "setup.py", "")
    make_file(tmp_path / "p" / "pyproject.toml", "")
    notebook = make_file(tmp_path / "p" / "x.ipynb")
    assert nb.find_project_root(notebook) == ((tmp_path / "p").resolve(), "marker:pyproject.toml")


def test_project_root_no_marker_is_notebook_folder(tmp_path, no_outer_marker):
    notebook = make_file(tmp_path / "loose" / "sub" / "x.ipynb")
    assert nb.find_project_root(notebook) == ((tmp_path / "loose" / "sub").resolve(), "notebook-folder")
    loc = nb.locate_notebook({}, explicit=notebook)
    assert loc == nb.NotebookLocation(notebook.resolve(), "explicit", notebook.parent.resolve(), "notebook-folder")


def test_project_root_of_a_folder_and_of_a_missing_file(tmp_path):
    make_file(tmp_path / "p" / "setup.py", "")
    (tmp_path / "p" / "dir").mkdir()
    assert nb.find_project_root(tmp_path / "p" / "dir") == ((tmp_path / "p").resolve(), "marker:setup.py")
    assert nb.find_project_root(tmp_path / "p" / "not-yet.ipynb") == ((tmp_path / "p").resolve(), "marker:setup.py")


# ------------------------------------------------------------------- jupyter server


def test_server_session_found(isolated, in_kernel, http_server, tmp_path):
    root = tmp_path / "srvroot"
    target = make_file(root / "proj" / "notebooks" / "exp.ipynb")
    make_file(root / "proj" / "pyproject.toml", "")
    srv = http_server([session("other-kernel", "x.ipynb"), session(KERNEL_ID, "proj/notebooks/exp.ipynb")])
    port = srv.server_address[1]
    write_server_info(isolated["runtime"], "jpserver-123.json", url=f"http://127.0.0.1:{port}/", root_dir=str(root))

    loc = nb.locate_notebook({}, environ={}, timeout=2.0)
    assert loc == nb.NotebookLocation(target.resolve(), "jupyter-server", (root / "proj").resolve(), "marker:pyproject.toml")
    assert srv.calls == [("/api/sessions", f"token {TOKEN}")]
    assert nb.running_server_sessions_notebook(timeout=2.0) == target.resolve()


def test_server_legacy_nbserver_file_and_base_url(isolated, in_kernel, http_server, tmp_path):
    root = tmp_path / "nbroot"
    srv = http_server([session(KERNEL_ID, "a/b.ipynb", legacy=True)])
    port = srv.server_address[1]
    write_server_info(
        isolated["runtime"], "nbserver-77.json", url=f"http://localhost:{port}/base/", notebook_dir=str(root)
    )
    assert nb.running_server_sessions_notebook(timeout=2.0) == (root / "a" / "b.ipynb").resolve()
    assert srv.calls == [("/base/api/sessions", f"token {TOKEN}")]


@pytest.mark.parametrize("with_jupyter_core", [True, False])
def test_server_found_via_default_runtime_dir_under_home(
    isolated, in_kernel, http_server, monkeypatch, tmp_path, with_jupyter_core
):
    if not with_jupyter_core:
        monkeypatch.setitem(sys.modules, "jupyter_core.paths", None)  # makes the import fail
    monkeypatch.delenv("JUPYTER_RUNTIME_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.delenv("JUPYTER_DATA_DIR")
    runtime = isolated["home"] / ".local" / "share" / "jupyter" / "runtime"
    runtime.mkdir(parents=True)
    monkeypatch.setenv("XDG_DATA_HOME", str(isolated["home"] / ".local" / "share"))
    srv = http_server([session(KERNEL_ID, "n.ipynb")])
    write_server_info(runtime, "jpserver-9.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    assert nb.running_server_sessions_notebook(timeout=2.0) == (tmp_path / "n.ipynb").resolve()


def test_server_without_matching_kernel(isolated, in_kernel, http_server, tmp_path):
    srv = http_server([session("someone-else", "x.ipynb")])
    write_server_info(isolated["runtime"], "jpserver-123.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    assert nb.locate_notebook({}, environ={}).how == "cwd"
    assert len(srv.calls) == 1


def test_server_wrong_token_is_not_found(isolated, in_kernel, http_server, tmp_path):
    srv = http_server([session(KERNEL_ID, "x.ipynb")], token="the-real-one")
    write_server_info(isolated["runtime"], "jpserver-123.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    assert nb.locate_notebook({}, environ={}).how == "cwd"
    assert srv.calls == [("/api/sessions", f"token {TOKEN}")]


@pytest.mark.parametrize("body", [b"not json", b'{"sessions": 1}', b"[1, 2, {\"kernel\": 3}]"])
def test_server_bad_answer_is_not_found(isolated, in_kernel, http_server, tmp_path, body):
    srv = http_server(raw_body=body)
    write_server_info(isolated["runtime"], "jpserver-123.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    assert nb.locate_notebook({}, environ={}).how == "cwd"


def test_server_bad_and_stale_info_files_then_good_one(isolated, in_kernel, http_server, tmp_path):
    # a refused connection (stale file), an unreadable file and a good server: the good one answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    make_file(isolated["runtime"] / "jpserver-1.json", "{broken")
    write_server_info(isolated["runtime"], "jpserver-2.json", url=f"http://127.0.0.1:{dead_port}/", root_dir=str(tmp_path))
    srv = http_server([session(KERNEL_ID, "good.ipynb")])
    write_server_info(isolated["runtime"], "jpserver-3.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    loc = nb.locate_notebook({}, environ={}, timeout=2.0)
    assert (loc.notebook, loc.how) == ((tmp_path / "good.ipynb").resolve(), "jupyter-server")


def test_server_wildcard_bind_is_asked_through_loopback(isolated, in_kernel, http_server, tmp_path):
    srv = http_server([session(KERNEL_ID, "w.ipynb")])
    port = srv.server_address[1]
    write_server_info(
        isolated["runtime"], "jpserver-5.json",
        url=f"http://some-hostname.invalid:{port}/", hostname="0.0.0.0", port=port, root_dir=str(tmp_path),
    )
    assert nb.running_server_sessions_notebook(timeout=2.0) == (tmp_path / "w.ipynb").resolve()


def test_not_in_a_kernel_skips_servers(isolated, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(nb, "_urlopen", lambda *a, **k: calls.append(a) or _must_not_be_called())
    write_server_info(isolated["runtime"], "jpserver-123.json", url="http://127.0.0.1:1/", root_dir=str(tmp_path))
    assert nb.locate_notebook({}, environ={}).how == "cwd"
    assert calls == []


def test_real_connection_file_lookup_outside_a_kernel():
    assert _real_connection_file() is None
    assert nb._kernel_id("/x/kernel-abc-1.json") == "abc-1"
    assert nb._kernel_id("/x/something.json") is None


def test_zero_timeout_skips_servers(isolated, in_kernel, monkeypatch, tmp_path):
    monkeypatch.setattr(nb, "_urlopen", _must_not_be_called)
    write_server_info(isolated["runtime"], "jpserver-123.json", url="http://127.0.0.1:1/", root_dir=str(tmp_path))
    assert nb.locate_notebook({}, environ={}, timeout=0).how == "cwd"


def test_hanging_server_gives_cwd_within_timeout(isolated, in_kernel, hanging_server, tmp_path):
    write_server_info(isolated["runtime"], "jpserver-123.json", url=f"http://127.0.0.1:{hanging_server}/", root_dir=str(tmp_path))
    timeout = 0.5
    start = time.monotonic()
    loc = nb.locate_notebook({}, environ={}, timeout=timeout)
    elapsed = time.monotonic() - start
    assert loc.how == "cwd" and loc.notebook is None
    assert elapsed < timeout * 3 + 1, elapsed


def test_non_loopback_server_is_never_contacted(isolated, in_kernel, http_server, monkeypatch, tmp_path):
    opened = []
    connects = []
    real_urlopen = nb._urlopen
    real_create_connection = socket.create_connection

    def spy_urlopen(request, timeout):
        opened.append(request.full_url)
        if "10.255.255.1" in request.full_url:
            raise AssertionError("tried to reach an off-machine server")
        return real_urlopen(request, timeout=timeout)

    def guarded_create_connection(address, *args, **kwargs):
        connects.append(address)
        if address[0] not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"off-machine connection attempt to {address}")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(nb, "_urlopen", spy_urlopen)
    monkeypatch.setattr(socket, "create_connection", guarded_create_connection)

    # only the remote server: nothing is opened at all
    remote = write_server_info(isolated["runtime"], "jpserver-123.json", url="http://10.255.255.1:8888/", root_dir="/remote")
    assert nb.locate_notebook({}, environ={}, timeout=1.0).how == "cwd"
    assert opened == [] and connects == []

    # remote (newer) and local server: the local one answers, the remote one is still skipped
    srv = http_server([session(KERNEL_ID, "local.ipynb")])
    local = write_server_info(isolated["runtime"], "jpserver-456.json", url=f"http://127.0.0.1:{srv.server_address[1]}/", root_dir=str(tmp_path))
    os.utime(local, (time.time() - 100, time.time() - 100))
    os.utime(remote, None)
    loc = nb.locate_notebook({}, environ={}, timeout=2.0)
    assert (loc.notebook, loc.how) == ((tmp_path / "local.ipynb").resolve(), "jupyter-server")
    assert opened and all("10.255.255.1" not in url for url in opened)
    assert all(addr[0] == "127.0.0.1" for addr in connects)


@pytest.mark.parametrize(
    "info, expected",
    [
        ({"url": "http://127.0.0.1:8888/"}, "http://127.0.0.1:8888/api/sessions"),
        ({"url": "http://localhost:8888/base"}, "http://localhost:8888/base/api/sessions"),
        ({"url": "http://[::1]:8888/"}, "http://[::1]:8888/api/sessions"),
        ({"url": "https://127.0.0.2:9/x/?token=abc"}, "https://127.0.0.2:9/x/api/sessions"),
        ({"url": "http://10.255.255.1:8888/"}, None),
        ({"url": "http://example.com:8888/"}, None),
        ({"url": "http://myhost:8888/", "hostname": "myhost", "port": 8888}, None),
        ({"url": "http://myhost:8888/", "hostname": "0.0.0.0", "port": 8888}, "http://127.0.0.1:8888/api/sessions"),
        ({"url": "http+unix://%2Ftmp%2Fjp.sock/"}, None),
        ({"url": ""}, None),
        ({}, None),
    ],
)
def test_sessions_url_only_for_this_machine(info, expected):
    assert nb._sessions_url(info) == expected


def test_location_is_frozen(tmp_path):
    loc = nb.locate_notebook({}, explicit=tmp_path / "x.ipynb")
    with pytest.raises(Exception):
        loc.how = "other"  # type: ignore[misc]
