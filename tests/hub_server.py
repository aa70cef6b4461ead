"""A small stand-in for the Hugging Face Hub, speaking the HTTP protocol the real clients use.

Tests aim the real ``huggingface_hub`` and ``datasets`` clients at it through ``HF_ENDPOINT``; nothing in
fulora or in the clients is patched. It keeps repositories in memory with git-like history (every commit is
a new sha over a file tree, with a parent), branches and tags, a per-repository LFS store filled through
the LFS batch API, and serves files through ``resolve`` with the headers ``hf_hub_download`` checks.

Only the routes the clients call for creating, pushing, tagging, listing and downloading are served;
anything else gets a 404, so a client change shows up as a failing test rather than a silent pass.
The server speaks HTTP/1.0 (one request per connection), so no connection outlives a test.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

LFS_PATTERNS = (
    "*.parquet",
    "*.arrow",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
    "*.h5",
    "*.npy",
    "*.npz",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.zip",
    "*.tar",
    "*.gz",
    "*.xz",
    "*.zst",
)
GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS
).encode()
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub stores any file over 10 MB in LFS
PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
REPO = r"(?P<ns>[\w.-]+)/(?P<name>[\w.-]+)"
DROP = 0  # a fault that closes the connection instead of answering


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob, as the Hub reports it for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """A file in a tree: git oid (of the content, or of the LFS pointer for LFS files), size, LFS sha256."""

    oid: str
    size: int
    sha256: str | None = None
    pointer_size: int | None = None

    def entry(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return entry


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str = field(default_factory=_now)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    git_blobs: dict[str, bytes] = field(default_factory=dict)  # regular files by git oid
    lfs: dict[str, bytes] = field(default_factory=dict)  # LFS objects by sha256

    def resolve(self, revision: str) -> Commit | None:
        """The commit a branch, tag, ``refs/...`` name or full commit sha points at."""
        for refs, prefix in ((self.branches, "refs/heads/"), (self.tags, "refs/tags/")):
            name = revision.removeprefix(prefix)
            if name in refs:
                return self.commits[refs[name]]
        return self.commits.get(revision)

    def read(self, blob: Blob) -> bytes:
        return self.lfs[blob.sha256] if blob.sha256 else self.git_blobs[blob.oid]

    def last_commit(self, commit: Commit, path: str) -> Commit:
        """The oldest ancestor of ``commit`` from which ``path`` (file or folder) has not changed."""

        def state(c: Commit):
            return sorted((p, b.oid) for p, b in c.files.items() if p == path or p.startswith(path + "/"))

        current = state(commit)
        while commit.parent and state(self.commits[commit.parent]) == current:
            commit = self.commits[commit.parent]
        return commit


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class StandInHub:
    """The server and its state. Start it with ``start()`` (or ``with``), read ``url`` and ``token``."""

    user = "fulora-tester"
    orgs = ("fulora",)

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.token = "hf_fulora_test_" + secrets.token_hex(8)
        self._secret = secrets.token_bytes(16)  # signs LFS upload URLs, as S3 pre-signed URLs are
        # commit shas differ between servers, as real ones differ between pushes of the same files
        self._salt = secrets.token_hex(8)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, route name) of every request served
        self.lfs_uploads: list[tuple[str, str]] = []  # (repo_id, sha256) of every LFS object received
        self.unknown: list[str] = []  # requests no route answered, e.g. optional client telemetry
        self._faults: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInHub:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="stand-in-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for tests -------------------------------------------------------------------------------------
    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """Every file of the repository at ``revision``, as bytes."""
        repo = self.repo(repo_id, repo_type)
        commit = repo.resolve(revision)
        if commit is None:
            raise KeyError(f"no revision {revision!r} in {repo_id}")
        return {path: repo.read(blob) for path, blob in commit.files.items()}

    def tags(self, repo_id: str, repo_type: str = "dataset") -> dict[str, str]:
        return dict(self.repo(repo_id, repo_type).tags)

    def head(self, repo_id: str, repo_type: str = "dataset", branch: str = "main") -> str:
        return self.repo(repo_id, repo_type).branches[branch]

    def count(self, route: str) -> int:
        """How many requests of one route (e.g. ``"lfs-batch"``, ``"lfs-upload"``, ``"commit"``) were served."""
        return sum(1 for _, name in self.requests if name == route)

    def fail_next(self, route: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``route`` with ``status``, as a flaky network or Hub would."""
        self._faults.setdefault(route, []).extend([status] * times)

    def drop_next(self, route: str, times: int = 1) -> None:
        """Close the connection of the next ``times`` requests of ``route`` without answering (a dropped link)."""
        self._faults.setdefault(route, []).extend([DROP] * times)

    # -- state changes -----------------------------------------------------------------------------------------
    def _commit(
        self, repo: Repo, branch: str, files: dict[str, Blob], title: str, description: str = ""
    ) -> Commit:
        parent = repo.branches.get(branch)
        tree = hashlib.sha1(json.dumps(sorted((p, b.oid) for p, b in files.items())).encode()).hexdigest()
        seed = f"tree {tree}\nparent {parent}\n{title}\n{description}\n{len(repo.commits)}{self._salt}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, description, _now(), files)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _store_regular(self, repo: Repo, content: bytes) -> Blob:
        blob = Blob(git_blob_oid(content), len(content))
        repo.git_blobs[blob.oid] = content
        return blob

    def _lfs_blob(self, sha256: str, size: int) -> Blob:
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
        return Blob(git_blob_oid(pointer), size, sha256, len(pointer))

    def _sign(self, repo: Repo, oid: str) -> str:
        return hmac.new(self._secret, f"{repo.repo_type}/{repo.repo_id}/{oid}".encode(), "sha256").hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: StandInHub

    def server_bind(self):  # skip HTTPServer's reverse DNS lookup of the host name
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    routes = [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/(?P<type>model|dataset|space)s/{REPO}(?:/revision/(?P<rev>[^/]+))?", "info"),
        ("GET", rf"/api/(?P<type>model|dataset|space)s/{REPO}/refs", "refs"),
        ("GET", rf"/api/(?P<type>model|dataset|space)s/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
        ("POST", rf"/api/(?P<type>model|dataset|space)s/{REPO}/paths-info/(?P<rev>[^/]+)", "paths_info"),
        ("POST", rf"/api/(?P<type>model|dataset|space)s/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", rf"/api/(?P<type>model|dataset|space)s/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", rf"/api/(?P<type>model|dataset|space)s/{REPO}/tag/(?P<rev>[^/]+)", "tag"),
        ("POST", rf"/(?P<prefix>datasets/|spaces/)?{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("POST", rf"/(?P<prefix>datasets/|spaces/)?{REPO}\.git/info/lfs/objects/verify", "lfs_verify"),
        ("PUT", rf"/lfs-upload/(?P<type>model|dataset|space)/{REPO}/(?P<oid>[0-9a-f]{{64}})", "lfs_upload"),
        ("GET", rf"/(?P<prefix>datasets/|spaces/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
        ("HEAD", rf"/(?P<prefix>datasets/|spaces/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ]

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- plumbing ----------------------------------------------------------------------------------------------
    @property
    def hub(self) -> StandInHub:
        return self.server.hub

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._read_body()
        found = [
            (name, m)
            for verb, pattern, name in self.routes
            if verb == method and (m := re.fullmatch(pattern, url.path))
        ]
        if not found:
            self.hub.requests.append((method, "unknown"))
            self.hub.unknown.append(f"{method} {url.path}")
            return self._send(404, {"error": f"stand-in Hub has no route {method} {url.path}"})
        name, match = found[0]
        self.hub.requests.append((method, name.replace("_", "-")))
        try:
            fault = self.hub._faults.get(name.replace("_", "-"))
            if fault:
                status = fault.pop(0)
                if status == DROP:  # the request was read; the link goes down before any answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                raise HubError(status, "injected failure")
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            with self.hub._lock:
                status, payload, headers = getattr(self, "r_" + name)(body=body, **params)
        except HubError as err:
            headers = {"X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            return self._send(err.status, {"error": err.message}, headers)
        self._send(status, payload, headers)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _user(self, required: bool = False) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth:
            if required:
                raise HubError(401, "You must be authenticated to do this; pass a token.")
            return None
        if auth != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.hub.user

    def _repo(self, type: str, ns: str, name: str, write: bool = False, prefix: str | None = None) -> Repo:
        if prefix is not None:
            type = {"datasets/": "dataset", "spaces/": "space", "": "model"}[prefix]
        user = self._user(required=write)
        repo = self.hub.repos.get((type, f"{ns}/{name}"))
        allowed = user is not None and ns in (user, *self.hub.orgs)
        if repo is None or (repo.private and not allowed):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and not allowed:
            raise HubError(403, f"You don't have the rights to write to {ns}/{name}")
        return repo

    def _commit_at(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _json(self, body: bytes) -> dict:
        try:
            return json.loads(body or b"{}")
        except ValueError as err:
            raise HubError(400, f"Malformed JSON body: {err}") from err

    # -- routes (each returns status, payload, headers) ---------------------------------------------------------
    def r_whoami(self, body):
        user = self._user(required=True)
        orgs = [{"type": "org", "name": org} for org in self.hub.orgs]
        return (
            200,
            {
                "type": "user",
                "name": user,
                "orgs": orgs,
                "auth": {"type": "access_token", "accessToken": {"displayName": "tests", "role": "write"}},
            },
            {},
        )

    def r_create(self, body):
        user = self._user(required=True)
        req = self._json(body)
        ns, repo_type = req.get("organization") or user, req.get("type") or "model"
        repo_id = f"{ns}/{req.get('name')}"
        if repo_type not in PREFIXES or not re.fullmatch(REPO, repo_id):
            raise HubError(400, f"Invalid repo type or name: {repo_type!r} {repo_id!r}")
        url = f"{self.hub.url}/{PREFIXES[repo_type]}{repo_id}"
        if ns not in (user, *self.hub.orgs):
            raise HubError(
                403, f"You don't have the rights to create a {repo_type} under the namespace {ns!r}"
            )
        if (repo_type, repo_id) in self.hub.repos:
            return 409, {"error": f"You already created this {repo_type} repo", "url": url}, {}
        # The Hub accepts both: newer clients send "visibility", older ones (0.26) "private".
        private = req.get("visibility") == "private" or req.get("private") is True
        repo = Repo(repo_type, repo_id, private=private)
        self.hub.repos[(repo_type, repo_id)] = repo
        self.hub._commit(
            repo, "main", {".gitattributes": self.hub._store_regular(repo, GITATTRIBUTES)}, "initial commit"
        )
        return 200, {"url": url, "name": repo_id, "id": repo_id}, {}

    def r_validate_yaml(self, body):
        content = self._json(body).get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
            error = (
                None if metadata is None or isinstance(metadata, dict) else "YAML metadata must be a mapping"
            )
        except yaml.YAMLError as err:
            error = f"Invalid YAML: {' '.join(str(err).split())}"
        return (400 if error else 200), {"errors": [{"message": error}] if error else [], "warnings": []}, {}

    def r_info(self, body, type, ns, name, rev="main"):
        repo = self._repo(type, ns, name)
        commit = self._commit_at(repo, rev)
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if self.query.get("blobs") in ("1", "true", "True"):
                sibling.update(size=blob.size, blobId=blob.oid)
                if blob.sha256:
                    sibling["lfs"] = {
                        "sha256": blob.sha256,
                        "size": blob.size,
                        "pointerSize": blob.pointer_size,
                    }
            siblings.append(sibling)
        return (
            200,
            {
                "_id": repo.repo_id,
                "id": repo.repo_id,
                "author": ns,
                "sha": commit.oid,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo.created_at,
                "lastModified": commit.date,
                "siblings": siblings,
            },
            {},
        )

    def r_refs(self, body, type, ns, name):
        repo = self._repo(type, ns, name)

        def refs(kind, names):
            return [
                {"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": oid}
                for n, oid in sorted(names.items())
            ]

        return (
            200,
            {
                "branches": refs("heads", repo.branches),
                "converts": [],
                "tags": refs("tags", repo.tags),
                "pullRequests": [],
            },
            {},
        )

    def _entries(self, repo: Repo, commit: Commit, paths: list[str], expand: bool) -> list[dict]:
        entries = []
        for path in paths:
            if path in commit.files:
                entry = commit.files[path].entry(path)
            else:
                inside = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
                oid = hashlib.sha1(json.dumps(inside).encode()).hexdigest()
                entry = {"type": "directory", "oid": oid, "path": path}
            if expand:
                last = repo.last_commit(commit, path)
                entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
            entries.append(entry)
        return entries

    def r_tree(self, body, type, ns, name, rev, path=""):
        repo = self._repo(type, ns, name)
        commit = self._commit_at(repo, rev)
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        below = [p[len(prefix) :] for p in commit.files if p.startswith(prefix)]
        if path and not below:
            raise HubError(
                404, f"{path} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": commit.oid}
            )
        recursive = self.query.get("recursive", "").lower() in ("1", "true")
        found = set()
        for rel in below:
            parts = rel.split("/")
            if recursive:
                found.update("/".join(parts[: i + 1]) for i in range(len(parts)))
            else:
                found.add(parts[0])
        names = sorted(found, key=lambda n: (prefix + n in commit.files, n))  # folders first
        expand = self.query.get("expand", "").lower() in ("1", "true")
        return 200, self._entries(repo, commit, [prefix + n for n in names], expand), {}

    def r_paths_info(self, body, type, ns, name, rev):
        repo = self._repo(type, ns, name)
        commit = self._commit_at(repo, rev)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            req = self._json(body)
            paths, expand = req.get("paths", []), bool(req.get("expand"))
        else:
            form = parse_qs(body.decode())
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() in ("1", "true")
        paths = [p.strip("/") for p in paths]
        present = [p for p in paths if p in commit.files or any(f.startswith(p + "/") for f in commit.files)]
        return 200, self._entries(repo, commit, present, expand), {}

    def r_preupload(self, body, type, ns, name, rev):
        repo = self._repo(type, ns, name, write=True)
        commit = self._commit_at(repo, rev)
        files = []
        for item in self._json(body).get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = (
                size >= LFS_THRESHOLD
                or b"\0" in sample
                or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
            )
            existing = commit.files.get(path)
            oid = None
            if existing is not None:
                oid = existing.sha256 if lfs else (None if existing.sha256 else existing.oid)
            files.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return 200, {"files": files, "commitOid": commit.oid}, {}

    def r_lfs_batch(self, body, prefix="", ns="", name=""):
        repo = self._repo("", ns, name, write=True, prefix=prefix)
        req = self._json(body)
        if req.get("operation") != "upload":
            raise HubError(400, f"Only uploads are supported, got operation {req.get('operation')!r}")
        objects = []
        for obj in req.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append(
                    {
                        "oid": str(oid),
                        "size": int(size or 0),
                        "error": {"code": 422, "message": "oid must be a sha256 and size an integer"},
                    }
                )
            elif oid in repo.lfs:
                objects.append({"oid": oid, "size": size})  # no actions: the client skips the upload
            else:
                href = (
                    f"{self.hub.url}/lfs-upload/{repo.repo_type}/{repo.repo_id}/{oid}"
                    f"?size={size}&sig={self.hub._sign(repo, oid)}"
                )
                verify = (
                    f"{self.hub.url}/{PREFIXES[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
                )
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {"upload": {"href": href}, "verify": {"href": verify}},
                    }
                )
        return (
            200,
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def r_lfs_upload(self, body, type, ns, name, oid):
        repo = self.hub.repos.get((type, f"{ns}/{name}"))
        if repo is None or not hmac.compare_digest(self.query.get("sig", ""), self.hub._sign(repo, oid)):
            raise HubError(403, "Signature does not match")
        if hashlib.sha256(body).hexdigest() != oid or str(len(body)) != self.query.get("size"):
            raise HubError(
                400, f"Uploaded content does not match sha256 {oid} and size {self.query.get('size')}"
            )
        repo.lfs[oid] = body
        self.hub.lfs_uploads.append((repo.repo_id, oid))
        return 200, b"", {"ETag": f'"{oid}"'}

    def r_lfs_verify(self, body, prefix="", ns="", name=""):
        repo = self._repo("", ns, name, write=True, prefix=prefix)
        req = self._json(body)
        if req.get("oid") not in repo.lfs or len(repo.lfs[req["oid"]]) != req.get("size"):
            raise HubError(404, f"LFS object {req.get('oid')} was not uploaded")
        return 200, {"success": True}, {}

    def r_commit(self, body, type, ns, name, rev):
        repo = self._repo(type, ns, name, write=True)
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev} is not a branch", "RevisionNotFound")
        if self.query.get("create_pr"):
            raise HubError(400, "The stand-in Hub does not support pull requests")
        lines = [self._json(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "A commit payload starts with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, repo.branches[rev]):
            raise HubError(412, "A commit has happened since; parentCommit is not the head of the branch")
        files = dict(repo.commits[repo.branches[rev]].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                files[path] = self.hub._store_regular(repo, base64.b64decode(value["content"]))
            elif key == "lfsFile":
                data = repo.lfs.get(value.get("oid"))
                if data is None or value.get("size", len(data)) != len(data):
                    raise HubError(
                        422,
                        f"Your push was rejected: LFS object {value.get('oid')} for {path} was not uploaded",
                    )
                files[path] = self.hub._lfs_blob(value["oid"], len(data))
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(path + "/")]:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        commit = self.hub._commit(
            repo, rev, files, header.get("summary") or "", header.get("description") or ""
        )
        url = f"{self.hub.url}/{PREFIXES[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return (
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": url,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
            {},
        )

    def r_tag(self, body, type, ns, name, rev):
        repo = self._repo(type, ns, name, write=True)
        commit = self._commit_at(repo, rev)
        tag = self._json(body).get("tag")
        if not tag or not re.fullmatch(r"[\w.-]+", tag):
            raise HubError(400, f"Invalid tag name {tag!r}")
        if tag in repo.tags or tag in repo.branches:
            raise HubError(409, f"Reference refs/tags/{tag} already exists")
        repo.tags[tag] = commit.oid
        return 200, {}, {}

    def r_resolve(self, body, prefix="", ns="", name="", rev="", path=""):
        repo = self._repo("", ns, name, prefix=prefix)
        commit = self._commit_at(repo, rev)
        blob = commit.files.get(path)
        headers = {"X-Repo-Commit": commit.oid}
        if blob is None:
            raise HubError(404, "Entry not found", "EntryNotFound", headers)
        content = repo.read(blob)
        etag = blob.sha256 or blob.oid
        headers.update(
            {"ETag": f'"{etag}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        )
        if blob.sha256:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(blob.size)})
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", ""))
        if not match or self.command == "HEAD":
            return 200, content, headers
        start, end = match.groups()
        first, last = (
            (int(start), int(end) if end else blob.size - 1)
            if start
            else (blob.size - int(end), blob.size - 1)
        )
        if first >= blob.size:
            raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{blob.size}"})
        last = min(last, blob.size - 1)
        headers["Content-Range"] = f"bytes {first}-{last}/{blob.size}"
        return 206, content[first : last + 1], headers
