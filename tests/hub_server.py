"""A real Hugging Face Hub API on loopback, serving local folders as Hub repos (for tests).

How it works
------------
* The PyPI package ``olah`` (a Hub mirror) can serve *local git repositories* read-only: its config key
  ``[basic] mirrors-path = [ROOT]`` makes it answer for ``ROOT/<models|datasets|spaces>/<org>/<name>`` (a plain,
  non-bare git work tree) straight from git, at any branch/tag/sha. ``[accessibility] offline = true`` stops every
  upstream call (visibility probes, the 5-minute ``huggingface.co`` health check), and ``hf-netloc`` points at a
  closed loopback port as a second guard, so the server never leaves the machine.
* :class:`LoopbackHub` writes that TOML into a temporary folder, runs ``python tests/hub_server.py --serve CONFIG``
  in a subprocess bound to ``127.0.0.1:<free port>`` and waits until it answers. :meth:`LoopbackHub.add_repo` copies
  a folder into ``ROOT/<type>s/<org>/<name>`` and commits it (plain git, branch ``main``, no git-lfs: big binary
  files are ordinary blobs) and returns the commit sha.
* The subprocess runs olah's own FastAPI app behind a small ASGI shim (:class:`_LocalMirrorShim`) that fixes what
  olah 0.5.x gets wrong for local repos:

  - file downloads (``/{org}/{name}/resolve/{rev}/{path}``, ``/datasets/...``) are answered from git directly, with
    the Hub's headers (``ETag``, ``X-Repo-Commit``, ``Content-Length``), ``Range`` support (206; olah always sends the
    whole file, wrong for ``HfFileSystem`` partial reads), and the Hub's errors: 404 ``X-Error-Code: EntryNotFound``
    for a missing file (olah answers 401 RepoNotFound on HEAD and 500 on GET, so clients raised
    ``RepositoryNotFoundError`` and fallbacks such as "no model.safetensors, try pytorch_model.bin" broke) and 404
    ``RevisionNotFound`` for an unknown revision;
  - ``/api/<type>s/{org}/{name}`` without a revision (``model_info(repo_id)``, ``load_dataset`` without
    ``revision=``) is answered as ``.../revision/main`` (olah offline answers 401 there).

  Everything else (``/api/.../revision/{rev}``, ``tree``, ``paths-info``, ``refs``, ``commits``) is olah.
* Clients: set ``HF_ENDPOINT=http://127.0.0.1:PORT`` and unset ``HF_HUB_OFFLINE``. ``huggingface_hub`` and
  ``datasets`` read these (and ``HF_HOME``) once, at import, into module constants; :func:`hub_env` /
  :func:`patched_hf_env` set the environment *and* re-derive those constants in the already imported modules
  (``huggingface_hub.constants``, ``datasets.config``, ``from ... import`` copies in huggingface_hub / datasets /
  timm / transformers / diffusers, the default ``huggingface_hub.hf_api.api`` client) and restore all of it on exit.
  So it works inside one pytest process whatever was imported first, and subprocesses inherit the environment.

Limits
------
* Read-only: uploads (``create_repo``, ``upload_folder``, ``push_to_hub``, ``HfApi.create_commit``) are not served;
  test those by intercepting ``HfApi`` and test the round trip by serving the exported folder here.
* Repo ids must be ``org/name``. Only ``model`` and ``dataset`` (and ``space``) repos. No auth, gating, private
  repos, LFS/Xet metadata (no ``X-Linked-Etag``; files are served as regular git blobs, which the clients accept),
  ``/api/models`` search/listing, dataset-viewer/parquet-conversion APIs, or ``refs/convert/parquet``.
* Files are read into memory per request: fine for test-sized checkpoints (MBs), not for GBs.
* ``HfApi``/``HfFileSystem`` objects created *before* :func:`hub_env` keep the endpoint they were built with (the
  ``HfFileSystem`` instance cache is cleared on enter/exit).
* A file of 121-149 bytes that is itself a git-lfs pointer text would be reported as LFS by olah's tree API.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

REPO_TYPE_DIRS = {"model": "models", "dataset": "datasets", "space": "spaces"}
HEALTH_PATH = "/__loopback_hub__/health"
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_GIT_ENV = {
    # Ignore the developer's ~/.gitconfig and /etc/gitconfig: no lfs filters, hooks, signing, autocrlf.
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "loopback-hub",
    "GIT_AUTHOR_EMAIL": "loopback-hub@localhost",
    "GIT_COMMITTER_NAME": "loopback-hub",
    "GIT_COMMITTER_EMAIL": "loopback-hub@localhost",
}


class HubServerError(RuntimeError):
    """The loopback Hub could not be started (olah missing, crashed, or never answered)."""


# --------------------------------------------------------------------------------------------------------------------
# Client side: the server process and its repos
# --------------------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _olah_config(port: int, repos_path: Path, mirrors_path: Path) -> str:
    netloc = f"127.0.0.1:{port}"
    return "\n".join(
        [
            "[basic]",
            'host = "127.0.0.1"',
            f"port = {port}",
            f'repos-path = "{repos_path.as_posix()}"',  # olah's download cache: stays empty when offline
            f'mirrors-path = ["{mirrors_path.as_posix()}"]',  # the local git repos it serves
            'mirror-scheme = "http"',
            f'mirror-netloc = "{netloc}"',
            f'mirror-lfs-netloc = "{netloc}"',
            # "Upstream" = a closed loopback port (discard service): belt and braces next to offline mode.
            'hf-scheme = "http"',
            'hf-netloc = "127.0.0.1:9"',
            'hf-lfs-netloc = "127.0.0.1:9"',
            "metadata-cache-ttl = 0",
            "",
            "[accessibility]",
            "offline = true",
            "",
        ]
    )


def _http_get(url: str, timeout: float) -> int:
    # No proxies: a developer's HTTP(S)_PROXY must not swallow loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **_GIT_ENV}
    proc = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout.strip()


class LoopbackHub:
    """An olah server on ``127.0.0.1`` serving local folders as Hub repos. Use as a context manager.

    >>> with LoopbackHub() as hub, hub_env(hub.endpoint, tmp / "hf_home"):
    ...     sha = hub.add_repo("org/name", folder)
    ...     hf_hub_download("org/name", "config.json", revision="main")
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, startup_timeout: float = 60.0) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._given_root = Path(root) if root is not None else None
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._proc_rc: int | None = None
        self._log_file = None

    # -- lifecycle -----------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        if self.port is None:
            raise HubServerError("LoopbackHub is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def mirrors_path(self) -> Path:
        if self.root is None:
            raise HubServerError("LoopbackHub is not started")
        return self.root / "mirrors"

    @property
    def log_path(self) -> Path | None:
        return None if self.root is None else self.root / "server.log"

    def start(self) -> LoopbackHub:
        if self._proc is not None:
            return self
        try:
            import olah  # noqa: F401
        except ImportError as err:
            raise HubServerError(f"olah is not installed ({err}); `pip install olah`") from err
        if self._given_root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="loopback-hub-")
            self.root = Path(self._tmp.name)
        else:
            self.root = self._given_root
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("mirrors", "olah-cache", "logs"):
            (self.root / sub).mkdir(exist_ok=True)

        last_error = ""
        for _attempt in range(3):  # the free port can be grabbed between probing and binding: retry
            port = _free_port()
            cfg = self.root / "olah.toml"
            cfg.write_text(_olah_config(port, self.root / "olah-cache", self.mirrors_path))
            try:
                self._launch(port, cfg)
                return self
            except HubServerError as err:
                last_error = str(err)
                if "address already in use" not in last_error.lower():
                    break
        self.stop()
        raise HubServerError(last_error)

    def _launch(self, port: int, cfg: Path) -> None:
        assert self.root is not None and self.log_path is not None
        env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
        env.update(PYTHONUNBUFFERED="1", HF_HUB_DISABLE_TELEMETRY="1", HF_HOME=str(self.root / "server-hf-home"))
        env["NO_PROXY"] = env["no_proxy"] = ",".join(filter(None, [env.get("NO_PROXY"), "127.0.0.1,localhost"]))
        # Output goes to a file, not a pipe: an unread pipe fills up with access logs and blocks the server.
        self._log_file = open(self.log_path, "ab")  # closed in _reap()
        script = str(Path(__file__).resolve())
        cmd = [sys.executable, script, "--serve", str(cfg), "--log-path", str(self.root / "logs")]
        self._proc = subprocess.Popen(
            cmd, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self.port = port
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                log = self._read_log()
                self._reap()
                raise HubServerError(f"olah exited with code {self._proc_rc} during startup. Log:\n{log}")
            try:
                if _http_get(self.endpoint + HEALTH_PATH, timeout=2) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        log = self._read_log()
        self._reap()
        raise HubServerError(f"olah did not answer on {port} within {self.startup_timeout:.0f}s. Log:\n{log}")

    def _read_log(self, limit: int = 8000) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            return self.log_path.read_text(errors="replace")[-limit:] if self.log_path else ""
        except OSError:
            return ""

    def _reap(self) -> None:
        self._proc_rc = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc_rc = self._proc.returncode
        self._proc = None
        self.port = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        self._reap()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.root = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- repos ---------------------------------------------------------------------------------------------------
    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        if repo_type not in REPO_TYPE_DIRS:
            raise ValueError(f"repo_type must be one of {sorted(REPO_TYPE_DIRS)}, got {repo_type!r}")
        if not _REPO_ID_RE.match(repo_id) or ".." in repo_id:
            raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
        org, name = repo_id.split("/")
        return self.mirrors_path / REPO_TYPE_DIRS[repo_type] / org / name

    def add_repo(
        self,
        repo_id: str,
        folder: str | os.PathLike[str],
        repo_type: str = "model",
        *,
        message: str = "Upload folder",
    ) -> str:
        """Serve ``folder`` as ``repo_id``: commit its content (nested ``.git`` dirs excluded) on branch ``main``.

        Calling it again for the same repo commits a new snapshot (files not in ``folder`` disappear); ``main``
        then points to it and the older sha stays downloadable. Returns the new commit sha.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise NotADirectoryError(folder)
        dest = self.repo_path(repo_id, repo_type)
        if not (dest / ".git").is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            _git(dest, "init", "-q", "-b", "main")
        else:
            for child in dest.iterdir():
                if child.name != ".git":
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        shutil.copytree(folder, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        _git(dest, "add", "-A", "-f")  # -f: a .gitignore in the folder must not drop files
        _git(dest, "-c", "core.autocrlf=false", "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
        return _git(dest, "rev-parse", "HEAD")


# --------------------------------------------------------------------------------------------------------------------
# Client side: environment / module-constant patching
# --------------------------------------------------------------------------------------------------------------------

# Modules that turn environment variables into constants at import time, in dependency order.
_ENV_MODULES = ("huggingface_hub.constants", "datasets.config")
# Packages whose modules may hold `from ... import CONSTANT` copies of those constants.
_COPY_PACKAGES = ("huggingface_hub", "datasets", "timm", "transformers", "diffusers", "pdiff_hub")
# Other names the same value is copied under.
_ALIASES = {"ENDPOINT": ("HUGGINGFACE_CO_RESOLVE_ENDPOINT",)}
_PLAIN_TYPES = (str, bytes, bool, int, float, type(None), Path, frozenset, tuple)

_CACHE_ENV_VARS = (
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HF_DATASETS_CACHE",
    "HF_MODULES_CACHE",
    "HF_DATASETS_DOWNLOADED_DATASETS_PATH",
    "HF_DATASETS_EXTRACTED_DATASETS_PATH",
    "HF_TOKEN_PATH",
    "HF_STORED_TOKENS_PATH",
)
_OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def _evaluate_module_source(module: object) -> dict[str, object]:
    """Re-run a constants module's source in a scratch namespace (the real module is untouched)."""
    path = module.__file__  # type: ignore[attr-defined]
    namespace: dict[str, object] = {
        "__name__": module.__name__,  # type: ignore[attr-defined]
        "__package__": module.__package__,  # type: ignore[attr-defined]
        "__file__": path,
        "__builtins__": builtins,
    }
    exec(compile(Path(path).read_text(encoding="utf-8"), path, "exec"), namespace)
    return namespace


def _refresh_env_constants(patches: list[tuple[object, str, object]]) -> None:
    def patch(obj: object, attr: str, value: object) -> None:
        patches.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    changed: dict[str, tuple[object, object]] = {}
    env_modules = []
    for modname in _ENV_MODULES:
        module = sys.modules.get(modname)
        if module is None:
            continue  # imported later, it reads os.environ itself
        env_modules.append(module)
        fresh = _evaluate_module_source(module)
        for name, new in fresh.items():
            if name.startswith("__") or not isinstance(new, _PLAIN_TYPES) or not hasattr(module, name):
                continue
            old = getattr(module, name)
            if isinstance(old, _PLAIN_TYPES) and type(old) is type(new) and old != new:
                patch(module, name, new)
                changed.setdefault(name, (old, new))
    if not changed:
        return

    for modname, module in list(sys.modules.items()):
        if module is None or module in env_modules or modname.split(".")[0] not in _COPY_PACKAGES:
            continue
        namespace = getattr(module, "__dict__", {})
        for name, (old, new) in changed.items():
            for alias in (name, *_ALIASES.get(name, ())):
                value = namespace.get(alias)
                if value is not None and type(value) is type(old) and value == old:
                    patch(module, alias, new)

    hf_api = sys.modules.get("huggingface_hub.hf_api")
    default_api = getattr(hf_api, "api", None)
    if "ENDPOINT" in changed and getattr(default_api, "endpoint", None) == changed["ENDPOINT"][0]:
        patch(default_api, "endpoint", changed["ENDPOINT"][1])  # module-level functions are bound to it


def _clear_client_caches() -> None:
    hf_fs = sys.modules.get("huggingface_hub.hf_file_system")
    if hf_fs is not None:
        hf_fs.HfFileSystem.clear_instance_cache()  # fsspec caches instances, with their endpoint


@contextlib.contextmanager
def patched_hf_env(env: Mapping[str, str | None]) -> Iterator[None]:
    """Set (value) / unset (None) environment variables and re-derive the HF constants computed from them.

    Restores both the environment and every patched module attribute on exit. Modules first imported inside the
    block read the block's environment and keep it (they are not "un-imported").
    """
    saved_env = {key: os.environ.get(key) for key in env}
    patches: list[tuple[object, str, object]] = []
    try:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(value)
        _refresh_env_constants(patches)
        _clear_client_caches()
        yield
    finally:
        for obj, attr, old in reversed(patches):
            setattr(obj, attr, old)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _clear_client_caches()


def isolated_hf_home_env(hf_home: str | os.PathLike[str]) -> dict[str, str | None]:
    """Environment for a private HF cache: ``HF_HOME`` set, cache/token overrides unset, telemetry off."""
    env: dict[str, str | None] = {key: None for key in _CACHE_ENV_VARS}
    env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1", HF_TOKEN=None, HUGGING_FACE_HUB_TOKEN=None)
    return env


@contextlib.contextmanager
def hub_env(endpoint: str, hf_home: str | os.PathLike[str]) -> Iterator[None]:
    """Point every HF client at ``endpoint`` with a private ``HF_HOME`` and offline modes off; restore on exit."""
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), "127.0.0.1,localhost"]))
    env = isolated_hf_home_env(hf_home)
    env.update({key: None for key in _OFFLINE_ENV_VARS})
    env.update(HF_ENDPOINT=endpoint.rstrip("/"), NO_PROXY=no_proxy, no_proxy=no_proxy)
    with patched_hf_env(env):
        yield


# --------------------------------------------------------------------------------------------------------------------
# Server side (runs in the subprocess): olah behind a small ASGI shim
# --------------------------------------------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _error(status: int, code: str, message: str, extra: Mapping[str, str] | None = None):
    body = json.dumps({"error": message}).encode()
    headers = {"x-error-code": code, "x-error-message": message, "content-type": "application/json"}
    headers.update(extra or {})
    return status, headers, body


class _LocalMirrorShim:
    """ASGI wrapper around olah's app; see the module docstring for what it answers itself."""

    def __init__(self, app, mirrors_root: Path) -> None:
        self.app = app
        self.mirrors_root = mirrors_root

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            import asyncio

            result = await asyncio.to_thread(self._route, scope)
            if isinstance(result, dict):  # rewritten scope for olah
                scope = result
            elif result is not None:
                status, headers, body = result
                headers.setdefault("content-length", str(len(body)))
                raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
                await send({"type": "http.response.start", "status": status, "headers": raw_headers})
                await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
                return
        await self.app(scope, receive, send)

    def _repo_dir(self, type_dir: str, org: str, name: str) -> Path | None:
        if any(part in ("", ".", "..") or "/" in part for part in (org, name)):
            return None
        path = self.mirrors_root / type_dir / org / name
        return path if (path / ".git").is_dir() else None

    def _route(self, scope):
        from urllib.parse import unquote

        method = scope["method"]
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        segs = [unquote(s) for s in raw.split("/")[1:]]
        if scope["path"] == HEALTH_PATH:
            return 200, {"content-type": "text/plain"}, b"ok"
        if method not in ("GET", "HEAD"):
            return None
        # /api/{models|datasets|spaces}/{org}/{name} (no revision) -> .../revision/main
        if len(segs) == 4 and segs[0] == "api" and segs[1] in REPO_TYPE_DIRS.values():
            if self._repo_dir(segs[1], segs[2], segs[3]) is not None:
                new_path = scope["path"].rstrip("/") + "/revision/main"
                return {**scope, "path": new_path, "raw_path": new_path.encode()}
            return None
        # /{org}/{name}/resolve/{rev}/{path} and /{datasets|spaces}/{org}/{name}/resolve/{rev}/{path}
        if len(segs) >= 6 and segs[0] in ("datasets", "spaces") and segs[3] == "resolve":
            type_dir, org, name, rev, path = segs[0], segs[1], segs[2], segs[4], "/".join(segs[5:])
        elif len(segs) >= 5 and segs[2] == "resolve":
            type_dir, org, name, rev, path = "models", segs[0], segs[1], segs[3], "/".join(segs[4:])
        else:
            return None
        repo_dir = self._repo_dir(type_dir, org, name)
        if repo_dir is None:
            return None  # olah answers 401 RepoNotFound, like the Hub for a missing repo
        return self._resolve(repo_dir, rev, path, scope)

    def _resolve(self, repo_dir: Path, rev: str, path: str, scope):
        import git
        import gitdb

        repo = git.Repo(repo_dir)
        try:
            commit = repo.commit(rev)
        except (gitdb.exc.BadName, gitdb.exc.BadObject, ValueError):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        headers = {"x-repo-commit": commit.hexsha}
        try:
            blob = commit.tree / path if path else None
        except KeyError:
            blob = None
        if blob is None or blob.type != "blob":
            return _error(404, "EntryNotFound", f"Entry not found: {path}", headers)
        data = blob.data_stream.read()
        size = len(data)
        headers.update(
            {"etag": f'"{blob.hexsha}"', "accept-ranges": "bytes", "content-type": "application/octet-stream"}
        )
        range_header = dict(scope.get("headers") or []).get(b"range")
        if range_header is None:
            headers["content-length"] = str(size)
            return 200, headers, data
        match = _RANGE_RE.match(range_header.decode("latin-1").strip())
        start = end = None
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: last N bytes
                start, end = max(size - int(match.group(2)), 0), size - 1
        if start is None or start >= size or start > end:
            headers.update({"content-range": f"bytes */{size}", "content-length": "0"})
            return 416, headers, b""
        headers.update({"content-range": f"bytes {start}-{end}/{size}", "content-length": str(end - start + 1)})
        return 206, headers, data[start : end + 1]


def _serve(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="olah + local-mirror shim (see tests/hub_server.py)")
    parser.add_argument("--serve", required=True, help="olah TOML config")
    parser.add_argument("--log-path", required=True)
    args = parser.parse_args(argv)

    from olah import server as olah_server
    from olah.configs import OlahConfig

    sys.argv = [sys.argv[0], "--config", args.serve, "--log-path", args.log_path]
    olah_args = olah_server.init()  # reads the TOML into app.state, builds olah's logger
    config: OlahConfig = olah_server.app.state.app_settings.config
    if not config.offline:
        raise SystemExit("refusing to start: the loopback Hub config must be offline")

    import uvicorn

    app = _LocalMirrorShim(olah_server.app, Path(config.mirrors_path[0]))
    uvicorn.run(app, host=olah_args.host, port=olah_args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    _serve(sys.argv[1:])
