"""Find the notebook a Jupyter kernel is running, and that notebook's project root.

A kernel is never told which document it belongs to, yet the cache lays out its
tree from the notebook's project root (a function defined in
``proj/notebooks/exp.ipynb`` caches under ``.../proj-<id>/notebooks/exp/<fn>/``).
This module collects the hints front ends and runners leave behind, in a fixed order of
trust (see :func:`locate_notebook`), and reports which one won so that ``ptd.config``
can explain itself.

Everything here is best effort: a lookup failure is logged at debug level and
the next source is tried; nothing raises to the caller and nothing blocks for
longer than the ``timeout`` it was given.  Only the standard library is
imported at import time; ``ipykernel`` and ``jupyter_core`` are used lazily
when present.  ``jupyter_server`` is never imported: its runtime files are
read directly.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Tuple

from persist_to_disk.layout import PROJECT_MARKERS, find_marker_root  # one definition of a project root

__all__ = [
    "PROJECT_MARKERS",
    "NOTEBOOK_ENV",
    "NotebookLocation",
    "find_project_root",
    "locate_notebook",
    "located",
    "running_server_sessions_notebook",
    "session_start_notebook",
]

log = logging.getLogger("persist_to_disk")


#: The setting a headless run (nbclient, a scheduler) uses to name the notebook it executes.
NOTEBOOK_ENV = "PTD_NOTEBOOK"

#: Largest ``/api/sessions`` answer we are willing to read (bytes).
_MAX_RESPONSE = 8 * 1024 * 1024

_KERNEL_FILE_RE = re.compile(r"^kernel-(.+)\.json$")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class NotebookLocation:
    """Where the running notebook is and where its project starts.

    ``how`` and ``project_how`` say which source produced each answer, so that
    a surprising cache location can be explained (``ptd.config`` shows them).
    """

    notebook: Optional[Path]  # absolute path of the .ipynb (or other document); None when unknown
    how: str  # "explicit", "PTD_NOTEBOOK", "vscode", "jupyter-server", "JPY_SESSION_NAME", "__session__",
    # "launcher" or "cwd"
    project_root: Path  # absolute
    project_how: str  # "marker:<name>", "notebook-folder" or "cwd"


# --------------------------------------------------------------------------- paths


def _cwd() -> Path:
    """The current folder; never raises (the folder may have been deleted)."""
    try:
        return Path.cwd()
    except OSError:
        pwd = os.environ.get("PWD", "")
        return Path(pwd) if pwd and os.path.isabs(pwd) else Path(os.path.abspath(os.sep))


def _absolute(p: "str | os.PathLike[str]", base: Optional[Path] = None) -> Path:
    """``p`` made absolute against ``base`` (default cwd), ``~`` expanded, symlinks resolved.

    Resolving gives one cache tree per real file however the notebook was reached.
    """
    path = Path(os.path.expanduser(os.fspath(p)))
    if not path.is_absolute():
        path = (base if base is not None else _cwd()) / path
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:  # PermissionError, name too long, ...
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def find_project_root(start: "str | os.PathLike[str]") -> Tuple[Path, str]:
    """The folder the cache tree of ``start`` is laid out from, and why.

    Walks up from ``start`` (a file's folder, or ``start`` itself when it is a
    folder) to the nearest folder holding one of :data:`PROJECT_MARKERS` and
    returns ``(folder, "marker:<name>")``.  Without any marker the document's
    own folder is the root: ``(folder, "notebook-folder")``.
    """
    try:
        path = _absolute(start)
        folder = path if _is_dir(path) else path.parent
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("find_project_root(%r) failed: %r", start, exc)
        folder = _cwd()
    found = find_marker_root(folder)
    return found if found is not None else (folder, "notebook-folder")


# ------------------------------------------------------------------ simple sources


def _session_path(value: object, cwd: Path) -> Optional[Path]:
    """Interpret a session name (``JPY_SESSION_NAME`` / ``__session__``) as a document path.

    Absolute names are accepted as they are.  Relative names are relative to
    the *server's* root, which the kernel does not know; they are accepted
    when they exist relative to cwd, or when cwd is the document's own folder
    (Jupyter starts kernels there), i.e. cwd ends with the name's folders and
    holds its file.  Anything else returns None so the next source is tried.
    """
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        return None
    raw = os.path.expanduser(value)
    if os.path.isabs(raw):
        return _absolute(raw)
    rel = Path(raw)
    if _exists(cwd / rel):
        return _absolute(rel, cwd)
    parent_parts = rel.parent.parts if str(rel.parent) != "." else ()
    if rel.name and tuple(cwd.parts[len(cwd.parts) - len(parent_parts):]) == parent_parts:
        if _exists(cwd / rel.name) and not _is_dir(cwd / rel.name):
            return _absolute(rel.name, cwd)
    return None


def _ipython_user_ns() -> Optional[Mapping[str, Any]]:
    """The running IPython's namespace, without importing IPython if it is not loaded."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return getattr(shell, "user_ns", None) if shell is not None else None
    except Exception as exc:
        log.debug("no IPython user namespace: %r", exc)
        return None


# ------------------------------------------------------------ jupyter-server source


def _connection_file() -> Optional[str]:
    """This kernel's connection file (``.../kernel-<id>.json``), or None outside a kernel.

    ipykernel is only consulted when already imported: a process that has not
    imported it is not a kernel, and importing it just to find out is slow.
    """
    if "ipykernel" not in sys.modules:
        return None
    try:
        from ipykernel.connect import get_connection_file

        return get_connection_file()
    except Exception as exc:
        log.debug("no kernel connection file: %r", exc)
        return None


def _kernel_id(connection_file: Optional[str]) -> Optional[str]:
    if not connection_file:
        return None
    match = _KERNEL_FILE_RE.match(os.path.basename(connection_file))
    return match.group(1) if match else None


def _runtime_dirs(connection_file: Optional[str] = None) -> List[Path]:
    """Folders that may hold ``jpserver-*.json`` files, most likely first, deduplicated."""
    dirs: List[Path] = []
    env_dir = os.environ.get("JUPYTER_RUNTIME_DIR")
    if env_dir:
        dirs.append(Path(env_dir))
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        dirs.append(Path(jupyter_runtime_dir()))
    except Exception as exc:
        log.debug("jupyter_core runtime dir unavailable: %r", exc)
        dirs.append(Path.home() / ".local" / "share" / "jupyter" / "runtime")
    if connection_file:
        # The server that started this kernel wrote the connection file into its own runtime dir.
        dirs.append(Path(connection_file).parent)
    out: List[Path] = []
    for d in dirs:
        d = Path(os.path.abspath(os.path.expanduser(str(d))))
        if d not in out:
            out.append(d)
    return out


def _server_infos(dirs: Iterable[Path]) -> List[Tuple[Path, dict]]:
    """Parsed server info files (``jpserver-*.json``, legacy ``nbserver-*.json``), newest first."""
    found: List[Tuple[float, Path, dict]] = []
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            if not (name.startswith(("jpserver-", "nbserver-")) and name.endswith(".json")):
                continue
            path = d / name
            try:
                with open(path, encoding="utf-8") as fh:
                    info = json.load(fh)
                mtime = path.stat().st_mtime
            except (OSError, ValueError) as exc:
                log.debug("unreadable server info %s: %r", path, exc)
                continue
            if isinstance(info, dict):
                found.append((mtime, path, info))
    found.sort(key=lambda t: -t[0])
    return [(p, i) for _, p, i in found]


def _is_loopback(host: Optional[str]) -> bool:
    if not host:
        return False
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _sessions_url(info: Mapping[str, Any]) -> Optional[str]:
    """``<url>api/sessions`` for a server on this machine, or None for any other host.

    A server bound to all interfaces (``--ip=0.0.0.0``) advertises the machine's
    host name in ``url``; it is reached through loopback instead.  Any other
    host is skipped: this module never talks to the network.
    """
    url = info.get("url")
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None  # e.g. http+unix sockets: urllib cannot speak them
    if not _is_loopback(host):
        bound = info.get("hostname")
        port = info.get("port")
        if not (isinstance(bound, str) and bound in _WILDCARD_HOSTS and isinstance(port, int)):
            return None
        loop = "[::1]" if ":" in bound else "127.0.0.1"
        parts = parts._replace(netloc=f"{loop}:{port}")
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return base.rstrip("/") + "/api/sessions"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a local server must not send us (and the token) elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


# No proxies (an http_proxy setting would carry a loopback request off the machine), no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _urlopen(request: urllib.request.Request, timeout: float) -> Any:
    """Open ``request`` with the proxy-free, redirect-free opener (tests replace this)."""
    return _OPENER.open(request, timeout=timeout)


def _fetch_sessions(url: str, token: str, timeout: float) -> Any:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    with _urlopen(request, timeout=timeout) as response:
        body = response.read(_MAX_RESPONSE + 1)
    if len(body) > _MAX_RESPONSE:
        raise ValueError("sessions answer too large")
    return json.loads(body.decode("utf-8"))


def _session_for_kernel(sessions: Any, kernel_id: str) -> Optional[str]:
    if not isinstance(sessions, list):
        return None
    for session in sessions:
        if not isinstance(session, dict):
            continue
        kernel = session.get("kernel")
        if not isinstance(kernel, dict) or kernel.get("id") != kernel_id:
            continue
        path = session.get("path")
        if not (isinstance(path, str) and path):
            nb = session.get("notebook")
            path = nb.get("path") if isinstance(nb, dict) else None
        if isinstance(path, str) and path:
            return path
    return None


def _join_root(info: Mapping[str, Any], api_path: str) -> Optional[Path]:
    root = info.get("root_dir") or info.get("notebook_dir")
    if not isinstance(root, str) or not root:
        return None
    parts = [p for p in api_path.replace("\\", "/").split("/") if p]
    return _absolute(Path(os.path.expanduser(root)).joinpath(*parts))


def _ask_servers(kernel_id: str, dirs: List[Path], deadline: float) -> Optional[Path]:
    cwd = _cwd()
    infos = _server_infos(dirs)

    def serves_cwd(item: Tuple[Path, dict]) -> int:
        # A kernel normally runs inside its server's root: ask those servers first.
        root = item[1].get("root_dir") or item[1].get("notebook_dir")
        try:
            if isinstance(root, str) and root:
                cwd.relative_to(_absolute(root))  # ValueError when cwd is outside root
                return 0
        except Exception:
            pass
        return 1

    infos.sort(key=serves_cwd)  # stable: newest first within each group
    for info_path, info in infos:
        url = _sessions_url(info)
        if url is None:
            log.debug("skipping server %s: not on this machine (%r)", info_path, info.get("url"))
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.debug("out of time before asking %s", url)
            break
        try:
            token = info.get("token")
            sessions = _fetch_sessions(url, token if isinstance(token, str) else "", remaining)
        except Exception as exc:  # refused, timeout, HTTP error, bad JSON, ...
            log.debug("asking %s for sessions failed: %r", url, exc)
            continue
        api_path = _session_for_kernel(sessions, kernel_id)
        if api_path is None:
            continue
        notebook = _join_root(info, api_path)
        if notebook is not None:
            return notebook
        log.debug("server %s has no root_dir to join %r with", info_path, api_path)
    return None


def running_server_sessions_notebook(timeout: float = 1.0, *, in_thread: bool = True) -> Optional[Path]:
    """Ask the Jupyter servers on this machine which notebook this kernel belongs to.

    Finds the kernel id from the kernel's connection file, reads the servers'
    runtime info files and asks each loopback server's ``/api/sessions``.
    Returns the notebook's absolute path, or None (not in a kernel, no
    server knows this kernel, any error).  Never raises and returns within
    about ``timeout`` seconds, even if a server accepts and never answers.
    ``in_thread=False`` asks from the calling thread (at interpreter exit, where
    no thread may start), bounded by the requests' own timeouts.
    """
    try:
        if not timeout or timeout <= 0:
            return None
        connection_file = _connection_file()
        kernel_id = _kernel_id(connection_file)
        if kernel_id is None:
            return None
        deadline = time.monotonic() + timeout
        if not in_thread:
            return _ask_servers(kernel_id, _runtime_dirs(connection_file), deadline)
        result: List[Optional[Path]] = [None]

        def work() -> None:
            try:
                result[0] = _ask_servers(kernel_id, _runtime_dirs(connection_file), deadline)
            except Exception as exc:
                log.debug("asking Jupyter servers failed: %r", exc)

        # A worker thread caps the whole step (file system included) at the budget; the
        # per-request socket timeouts make sure the thread itself ends soon after.
        worker = threading.Thread(target=work, name="ptd-notebook-lookup", daemon=True)
        worker.start()
        worker.join(timeout + 0.1)
        if worker.is_alive():
            log.debug("Jupyter server lookup did not finish within %.2fs", timeout)
            return None
        return result[0]
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("Jupyter server lookup failed: %r", exc)
        return None


# ------------------------------------------------------------------------- public


def locate_notebook(
    user_ns: Optional[Mapping[str, object]] = None,
    explicit: "str | os.PathLike[str] | None" = None,
    *,
    timeout: float = 1.0,
    environ: Optional[Mapping[str, str]] = None,
) -> NotebookLocation:
    """Find the running notebook and its project root; the first source that answers wins.

    Order: ``explicit`` (relative to cwd), ``$PTD_NOTEBOOK``, VS Code's
    ``__vsc_ipynb_file__``, the running Jupyter servers' sessions (at most ``timeout``
    seconds; they follow renames), ``$JPY_SESSION_NAME`` and ``__session__`` (the name
    the session started with), the notebook the process that launched this kernel
    executes (papermill, ``jupyter nbconvert --execute``), and finally the current
    folder. ``user_ns`` defaults to the running IPython's namespace when there is one;
    ``environ`` defaults to ``os.environ``. Never raises.
    """
    cwd = _cwd()
    try:
        if user_ns is None:
            user_ns = _ipython_user_ns()
        ns: Mapping[str, object] = user_ns if user_ns is not None else {}
        env: Mapping[str, str] = environ if environ is not None else os.environ

        notebook, how = _find(ns, explicit, env, cwd, timeout)
        if notebook is not None:
            return located(notebook, how)
    except Exception as exc:  # pragma: no cover - defensive
        log.debug("locate_notebook failed, using cwd: %r", exc)
    try:
        root, project_how = find_project_root(cwd)
    except Exception:  # pragma: no cover - defensive
        root, project_how = cwd, "cwd"
    if project_how == "notebook-folder":
        root, project_how = cwd, "cwd"
    return NotebookLocation(None, "cwd", root, project_how)


def located(notebook: Path, how: str) -> NotebookLocation:
    """The location of a notebook found by ``how``, with its project root."""
    root, project_how = find_project_root(notebook)
    return NotebookLocation(notebook, how, root, project_how)


def session_start_notebook(environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The notebook this kernel's Jupyter session started with (``$JPY_SESSION_NAME``), if it names one.

    The server sets it when it starts the kernel, and a running kernel's environment keeps
    it through renames (a restart gets the new name), so it tells where the cache of a
    notebook renamed since this kernel started was.
    """
    env = environ if environ is not None else os.environ
    return _session_path(env.get("JPY_SESSION_NAME"), _cwd())


def _find(
    ns: Mapping[str, object],
    explicit: "str | os.PathLike[str] | None",
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
) -> Tuple[Optional[Path], str]:
    if explicit is not None and os.fspath(explicit) != "":
        return _absolute(explicit, cwd), "explicit"

    named = env.get(NOTEBOOK_ENV)
    path = _session_path(named, cwd)
    if path is not None:
        return path, NOTEBOOK_ENV
    if named:
        log.debug("ignoring %s=%r: relative and not found", NOTEBOOK_ENV, named)

    vsc = ns.get("__vsc_ipynb_file__")
    if isinstance(vsc, os.PathLike):
        vsc = os.fspath(vsc)
    if isinstance(vsc, str) and vsc.strip():
        if vsc.startswith("file://"):
            vsc = urllib.request.url2pathname(urllib.parse.urlsplit(vsc).path)
        path = _session_path(vsc, cwd)
        if path is not None:
            return path, "vscode"
        log.debug("ignoring __vsc_ipynb_file__=%r: relative and not found", vsc)

    # the server's session follows renames and moves; JPY_SESSION_NAME keeps the name the kernel started with
    path = running_server_sessions_notebook(timeout)
    if path is not None:
        return path, "jupyter-server"

    for source, session in (("JPY_SESSION_NAME", env.get("JPY_SESSION_NAME")), ("__session__", ns.get("__session__"))):
        path = _session_path(session, cwd)
        if path is not None:
            return path, source
        if session:
            log.debug("ignoring %s=%r: relative and not found", source, session)

    from .headless import launcher_notebook  # the last resort: nbformat is imported only here

    path = launcher_notebook(ns)
    if path is not None:
        return path, "launcher"
    return None, "cwd"
