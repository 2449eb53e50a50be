"""Settings: where the cache lives and how it is laid out.

Settings come from ``~/.cache/persist_to_disk/config.ini`` (written on first
use, ``0600``, and by :meth:`Config.generate_config`), overridden in the process by the
``set_*`` methods. A config.ini another account could have written is ignored, with a
warning (see trust.py). Everything is read at call time, never at decoration time:
in a notebook a user sets the persist path after defining the function.
"""

from __future__ import annotations

import configparser
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from .errors import CacheWarning
from .origin import origin_id

# logging, trust and stores are imported where used: ``import persist_to_disk`` loads this module
# and little else (see __init__); the decorator's machinery imports them before any call runs.

__all__ = [
    "DEFAULTS", "LOCK_GRANULARITIES", "PROJECT_IDS_FILE", "SECTION", "Config", "Settings", "settings_dir",
    "validate_granularity", "validate_hashsize", "validate_seconds",
]

Granularity = Literal["call", "func", "global"]
"""How much a miss locks besides its own key (the ``lock_granularity`` setting)."""

SECTION = "global_settings"
LOCK_GRANULARITIES: tuple[Granularity, ...] = get_args(Granularity)
PROJECT_IDS_FILE = "project_to_pids.txt"
_ID_SEP = "||"

DEFAULTS: dict[str, str] = {
    "persist_path": "",  # empty: <settings folder>/cache
    "persist_path_local": "",  # empty: same as persist_path
    "hashsize": "500",
    "lock_granularity": "call",
    "fsync": "false",
    "shared_group": "false",  # true: files 0660 and folders 2770, and entries other group members wrote are loaded
    "trust_shared": "false",  # true: load entries whoever can write them (see trust.py before setting it)
    "track_dependencies": "true",  # false: keys hold a function's own code only, not its helpers and globals
    "remote_refresh_seconds": "10",  # an s3:// persist_path: how long a local copy is served unchecked
    "lease_seconds": "60",  # an s3:// persist_path: how long a dead machine's computation keeps others waiting
}


def settings_dir() -> Path:
    """``~/.cache/persist_to_disk``: config.ini and the project registry live here."""
    return Path(os.path.expanduser("~")) / ".cache" / "persist_to_disk"


def validate_hashsize(value: Any, setting: str = "hashsize") -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{setting}={value!r} is not an integer; it must be a positive number of buckets") from None
    if isinstance(value, bool) or size <= 0 or str(size) != str(value).strip():
        raise ValueError(f"{setting}={value!r} must be a positive integer (the number of hash buckets)")
    return size


def validate_granularity(value: Any, setting: str = "lock_granularity") -> Granularity:
    if value not in LOCK_GRANULARITIES:
        raise ValueError(f"{setting}={value!r} is not one of {', '.join(LOCK_GRANULARITIES)}")
    return value


def validate_seconds(value: Any, setting: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{setting}={value!r} is not a number of seconds") from None
    if isinstance(value, bool) or not 0 <= seconds < float("inf"):
        raise ValueError(f"{setting}={value!r} must be a number of seconds, 0 or more")
    return seconds


def _parse_bool(value: str, setting: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{setting}={value!r} is not a boolean (true/false)")


class Settings(NamedTuple):
    """One consistent snapshot of the settings, taken at call time."""

    persist_path: Path
    persist_path_local: Path
    project_path: Path | None  # None: found from the function's source file
    hashsize: int
    lock_granularity: Granularity
    fsync: bool
    generation: int
    shared_group: bool = False
    trust_shared: bool = False
    notebook_path: Path | None = None  # set by hand when the kernel cannot find its notebook
    track_dependencies: bool = True
    # persist_path as a URL (s3://bucket/prefix); persist_path is then this machine's folder of local copies
    remote_url: str | None = None
    remote_refresh_seconds: float = 10.0
    lease_seconds: float = 60.0


class Config:
    """The process-wide settings object, ``ptd.config``."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._file_values: dict[str, str] | None = None
        self._overrides: dict[str, Any] = {}
        self._generation = 0
        self._snapshot: Settings | None = None
        self._project_ids: dict[str, str] = {}
        self.notebook_locator: Any = None  # set by the Jupyter layer; see ipython_ext

    # -- files ----------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return settings_dir() / "config.ini"

    def _read_file(self) -> dict[str, str]:
        if self._file_values is None:
            values = dict(DEFAULTS)
            parser = configparser.ConfigParser()
            path = self.config_path
            if path.is_file():
                text, refused = _read_settings_file(path)
                try:
                    parser.read_string(text, source=str(path))
                except configparser.Error as exc:
                    raise ValueError(f"{path} is not a valid config.ini: {exc}") from exc
                if parser.has_section(SECTION) and refused:
                    _warn(
                        f"{path} is ignored: {refused}, so another account could have written it. Its settings "
                        f"({', '.join(parser.options(SECTION)) or 'none'}) are not used; the defaults are. Make "
                        f"it yours and writable by you alone (`chown $USER {path}; chmod 600 {path}`)."
                    )
                elif parser.has_section(SECTION):
                    found = dict(parser.items(SECTION))
                    unknown = sorted(set(found) - set(DEFAULTS))
                    if unknown:  # a typo would otherwise be ignored without a word
                        _warn(
                            f"{path}: unknown setting(s) {', '.join(unknown)} in [{SECTION}] are ignored; "
                            f"known settings: {', '.join(DEFAULTS)}"
                        )
                    values.update({k: v for k, v in found.items() if k in DEFAULTS})
            else:
                try:
                    self._write_file(values)
                except OSError as exc:
                    _logger().warning("could not write default settings to %s: %s", path, exc)
            self._file_values = values
        return self._file_values

    def _write_file(self, values: dict[str, str]) -> Path:
        path = self.config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        parser = configparser.ConfigParser()
        parser[SECTION] = {k: values.get(k, v) for k, v in DEFAULTS.items()}
        if not parser[SECTION]["persist_path"]:
            parser[SECTION]["persist_path"] = str(settings_dir() / "cache")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # writable by you alone: see trust.py
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write("# persist_to_disk settings; see the README for each one.\n")
            parser.write(fh)
        os.replace(tmp, path)
        return path

    def generate_config(self) -> Path:
        """Write config.ini with the current file settings (defaults filled in); return its path."""
        with self._lock:
            path = self._write_file(self._read_file())
        print(f"Settings written to {path}")
        return path

    def reload(self) -> None:
        """Forget the file settings read so far (the next call reads config.ini again)."""
        with self._lock:
            self._file_values = None
            self._bump()

    def reset(self) -> None:
        """Drop every in-process setting and re-read config.ini (tests, and a notebook starting over)."""
        with self._lock:
            self._overrides.clear()
            self._project_ids.clear()
            self._file_values = None
            self._bump()

    # -- setters (this process only) --------------------------------------------------------------
    def _bump(self) -> None:
        self._generation += 1
        self._snapshot = None

    def _set(self, name: str, value: Any) -> Any:
        with self._lock:
            self._overrides[name] = value
            self._bump()
        return value

    def set_persist_path(self, path: str | os.PathLike) -> str:
        """A folder, or a shared object store (``s3://BUCKET/PREFIX``)."""
        from .stores import copies_root, is_url

        if isinstance(path, str) and is_url(path):
            copies_root(path, settings_dir())  # a ValueError naming the setting if it names no bucket
            return str(self._set("persist_path", path.rstrip("/")))
        return str(self._set("persist_path", _abspath(path, "persist_path")))

    def set_persist_path_local(self, path: str | os.PathLike) -> str:
        return str(self._set("persist_path_local", _abspath(path, "persist_path_local")))

    def set_project_path(self, path: str | os.PathLike | None) -> str | None:
        """Root the cache tree at this project folder; None goes back to finding it."""
        if path is None:
            self._set("project_path", None)
            return None
        return str(self._set("project_path", _abspath(path, "project_path")))

    def set_hashsize(self, hashsize: int = 500) -> int:
        return self._set("hashsize", validate_hashsize(hashsize))

    def set_lock_granularity(self, granularity: Granularity) -> Granularity:
        return self._set("lock_granularity", validate_granularity(granularity))

    def set_fsync(self, enabled: bool) -> bool:
        return self._set("fsync", bool(enabled))

    def set_shared_group(self, enabled: bool) -> bool:
        """A team cache: create files 0660 and folders 2770, and load entries other group members wrote."""
        return self._set("shared_group", bool(enabled))

    def set_trust_shared(self, enabled: bool) -> bool:
        """Load entries whoever can write them: only for a cache where you trust every account that can."""
        return self._set("trust_shared", bool(enabled))

    def set_remote_refresh_seconds(self, seconds: float) -> float:
        """How long a local copy of a shared store's entry is served before it is checked against the store."""
        return self._set("remote_refresh_seconds", validate_seconds(seconds, "remote_refresh_seconds"))

    def set_lease_seconds(self, seconds: float) -> float:
        """How long a machine computing an entry of a shared store holds it without renewing (a dead one's expires)."""
        return self._set("lease_seconds", validate_seconds(seconds, "lease_seconds"))

    def set_track_dependencies(self, enabled: bool) -> bool:
        """Key results by the helpers and globals a function uses (the default), or by its own code only."""
        return self._set("track_dependencies", bool(enabled))

    def set_notebook_path(self, path: str | os.PathLike | None) -> str | None:
        """Tell a kernel which notebook it runs (when it cannot find out); None: find it again."""
        if path is None:
            self._set("notebook_path", None)
            return None
        return str(self._set("notebook_path", _abspath(path, "notebook_path")))

    # -- getters ------------------------------------------------------------------------------------
    def settings(self) -> Settings:
        """A snapshot of every setting; cheap when nothing changed."""
        snap = self._snapshot
        if snap is not None:
            return snap
        with self._lock:
            values = self._read_file()
            o = self._overrides
            src = "in config.ini"
            try:
                snap = self._build(values, o, src)
            except ValueError as exc:  # overrides were checked when set: the file is at fault
                raise ValueError(f"{exc} (file: {self.config_path}, section [{SECTION}])") from None
            self._snapshot = snap
            return snap

    def _build(self, values: dict[str, str], o: dict[str, Any], src: str) -> Settings:
        from .stores import copies_root, is_url

        def setting(name: str, parse: Callable[[Any, str], Any]) -> Any:
            """Set in this process (checked then), else the file's text parsed, an error naming it."""
            return o[name] if name in o else parse(values[name], f"{name} {src}")

        chosen = o.get("persist_path") or values["persist_path"]
        remote_url = chosen.rstrip("/") if chosen and is_url(chosen) else None
        if remote_url is not None:  # entries live in the store; this machine reads them from its copies
            try:
                persist = str(copies_root(remote_url, settings_dir()))
            except ValueError as exc:
                raise ValueError(f"{exc} ({'set in this process' if o.get('persist_path') else src})") from None
        else:
            persist = o.get("persist_path") or _abspath(chosen or settings_dir() / "cache", f"persist_path {src}")
        local = o.get("persist_path_local") or (
            _abspath(values["persist_path_local"], f"persist_path_local {src}")
            if values["persist_path_local"]
            else str(settings_dir() / "cache") if remote_url is not None else persist  # `local=True`: this machine
        )
        return Settings(
            remote_url=remote_url,
            remote_refresh_seconds=setting("remote_refresh_seconds", validate_seconds),
            lease_seconds=setting("lease_seconds", validate_seconds),
            persist_path=Path(persist),
            persist_path_local=Path(local),
            project_path=Path(o["project_path"]) if o.get("project_path") else None,
            notebook_path=Path(o["notebook_path"]) if o.get("notebook_path") else None,
            hashsize=o.get("hashsize") or validate_hashsize(values["hashsize"], f"hashsize {src}"),
            lock_granularity=o.get("lock_granularity")
            or validate_granularity(values["lock_granularity"], f"lock_granularity {src}"),
            fsync=setting("fsync", _parse_bool),
            generation=self._generation,
            shared_group=setting("shared_group", _parse_bool),
            trust_shared=setting("trust_shared", _parse_bool),
            track_dependencies=setting("track_dependencies", _parse_bool),
        )

    def get_persist_path(self, local: bool = False) -> str:
        s = self.settings()
        return str(s.persist_path_local if local else s.persist_path)

    def get_project_path(self) -> str:
        """The explicit project path, else the one found for the running notebook or folder."""
        explicit = self.settings().project_path
        if explicit is not None:
            return str(explicit)
        from .layout import default_project_root

        return str(default_project_root(None))

    def get_hashsize(self) -> int:
        return self.settings().hashsize

    def get_lock_granularity(self) -> Granularity:
        return self.settings().lock_granularity

    def get_project_persist_path(self, local: bool = False, project_path: str | os.PathLike | None = None) -> str:
        """``<persist_path>/<project name>-<autoid>`` for a project folder (default: the current one)."""
        project = Path(project_path) if project_path is not None else Path(self.get_project_path())
        return str(Path(self.get_persist_path(local)) / self.project_folder_name(project))

    # -- project ids ----------------------------------------------------------------------------------
    def project_folder_name(self, project_path: Path) -> str:
        """``<name>-<autoid>``; the id is given once per project path and kept for ever."""
        key = os.path.normpath(str(project_path))
        pid = self._project_ids.get(key)
        if pid is None:
            registry = settings_dir() / PROJECT_IDS_FILE
            pid = _retrieve_project_id(registry, key, lambda: origin_id(key), fsync=self.settings().fsync)
            self._project_ids[key] = pid
        return project_folder(key, pid)

    def describe(self) -> dict[str, Any]:
        """Every setting and where the paths came from; the Jupyter layer adds the notebook."""
        s = self.settings()
        info: dict[str, Any] = {
            "config_file": str(self.config_path),
            "persist_path": s.remote_url or str(s.persist_path),
            "persist_path_local": str(s.persist_path_local),
            "hashsize": s.hashsize,
            "lock_granularity": s.lock_granularity,
            "fsync": s.fsync,
            "shared_group": s.shared_group,
            "trust_shared": s.trust_shared,
            "track_dependencies": s.track_dependencies,
        }
        if s.remote_url is not None:
            info["local_copies"] = str(s.persist_path)
            info["remote_refresh_seconds"] = s.remote_refresh_seconds
            info["lease_seconds"] = s.lease_seconds
        if s.project_path is not None:
            info["project_path"], info["project_path_how"] = str(s.project_path), "explicit"
        else:
            from .layout import default_project_root_with_reason

            root, how = default_project_root_with_reason(None)
            info["project_path"], info["project_path_how"] = str(root), how
        locator = self.notebook_locator
        if locator is not None:
            try:
                info.update(locator.describe())
            except Exception as exc:  # reporting must never fail
                info["notebook_error"] = repr(exc)
        return info

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.describe().items())
        return f"Config({items})"


def _logger() -> Any:
    """The package's logger; ``logging`` comes with the decorator's machinery, not with this module."""
    import logging

    return logging.getLogger("persist_to_disk")


def _warn(message: str) -> None:
    _logger().warning(message)
    warnings.warn(message, CacheWarning, stacklevel=4)


def _read_settings_file(path: Path) -> tuple[str, str | None]:
    """(the text of config.ini, why it may not be honoured or None), checked on the file it read."""
    from . import trust

    with open(path, encoding="utf-8") as fh:
        return fh.read(), trust.why_untrusted_settings(str(path), os.fstat(fh.fileno()))


def _abspath(path: Any, setting: str) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        raise ValueError(f"{setting}={path!r} is not a path") from None
    if not text or "\x00" in text:
        raise ValueError(f"{setting}={path!r} is not a usable path")
    return os.path.normpath(os.path.abspath(os.path.expanduser(text)))


def read_project_registry(registry: Path | None = None) -> dict[str, str]:
    """``{project path: id}`` from project_to_pids.txt (default: this machine's), first line of a path first."""
    path = registry if registry is not None else settings_dir() / PROJECT_IDS_FILE
    ids: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ids
    for line in text.splitlines():
        project, sep, pid = line.rpartition(_ID_SEP)
        if sep:
            ids.setdefault(project, pid)
    return ids


def project_folder(project_path: str, pid: str) -> str:
    """A project's folder name under the persist path: ``<name>-<id>``."""
    return f"{os.path.basename(os.path.normpath(project_path)) or 'root'}-{pid}"


def _retrieve_project_id(
    registry: Path, project_key: str, shared_id: Callable[[], str | None], *, fsync: bool = False
) -> str:
    """Read, or append under a file lock, the project's line in project_to_pids.txt.

    A project seen for the first time takes ``shared_id()`` (its git origin's id, the same on
    every machine) when there is one, else the next number. The line is as durable as the
    entries it names: flushed to the disk only with the ``fsync`` setting (a crash of the
    process never loses it; a power cut may, as it may the entries written just before).
    """
    if _ID_SEP in project_key:
        raise ValueError(f"project path {project_key!r} must not contain {_ID_SEP!r}")
    registry.parent.mkdir(parents=True, exist_ok=True)

    def lookup() -> tuple[dict[str, str], int]:
        """(ids by project path, the largest id given so far): a deleted line never frees an id."""
        ids = read_project_registry(registry)
        return ids, max((int(pid) for pid in ids.values() if pid.isdigit()), default=0)

    ids, _ = lookup()
    if project_key in ids:
        return ids[project_key]
    from .locks import whole_file_lock  # (locks is loaded with the package; config is loaded before it)

    with whole_file_lock(str(registry) + ".lock"):
        ids, largest = lookup()
        if project_key not in ids:
            ids[project_key] = shared_id() or str(largest + 1)
            with open(registry, "a", encoding="utf-8") as fh:
                fh.write(f"{project_key}{_ID_SEP}{ids[project_key]}\n")
                if fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
    return ids[project_key]
