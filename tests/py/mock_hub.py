"""mock_hub.py - a local stand-in for the Hugging Face hub, for the `medembed pull` tests.

It serves model folders in the hub's URL and JSON layout on 127.0.0.1 only:

    GET /api/models/{org}/{name}/revision/{rev}[?blobs=true]
        {"id", "modelId", "sha", "private", "gated", "siblings": [{"rfilename", "size",
         "blobId", "lfs": {"sha256", "size", "pointerSize"}}]}   (size/blobId/lfs with blobs=true)
    GET /{org}/{name}/resolve/{rev}/{path}
        a small file: 200 with the bytes; an LFS file: 302 to a second server (the "CDN", on
        another port, as cdn-lfs.huggingface.co is another host) that serves the bytes
    Range: bytes=N- is honoured (206 + Content-Range; 416 past the end).
    Errors carry the hub's X-Error-Code / X-Error-Message headers and a JSON body.

Failure modes the tests switch on (each a plain attribute):
    cut_after[path] = n     the next transfer of path sends n body bytes, then drops the
                            connection (one-shot)
    corrupt.add(path)       every transfer of path has one byte flipped
    stall_api = s           the listing request waits s seconds before answering
    stall_file[path] = (n, s)  the next transfer of path sends n bytes, waits s seconds, and
                            drops the connection (one-shot)
    delay_file[path] = (n, s)  the next transfer of path pauses s seconds after n bytes, then
                            finishes (one-shot)
    ignore_range = True     Range headers are ignored (always 200 with the whole file)
    a repo added with token="..." is gated: 401 without "Authorization: Bearer <token>"

Every request is recorded in .log as dicts (server, method, path, query, range, auth), so a
test can assert what was and was not fetched, and that a second run made no request at all.
"""
import hashlib
import http.server
import json
import os
import threading
import urllib.parse

LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".ot")


class Repo:
    def __init__(self, name, revisions, token=None):
        self.name = name
        self.revisions = revisions  # rev name or commit -> {"commit", "files": {path: bytes}}
        self.token = token


def _commit_of(repo, label, files):
    h = hashlib.sha1(repo.encode() + b"\0" + label.encode())
    for k in sorted(files):
        h.update(k.encode() + b"\0" + hashlib.sha256(files[k]).digest())
    return h.hexdigest()


def read_folder(folder):
    """{repo-relative path: bytes} for every file under folder."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, folder).replace(os.sep, "/")
            with open(p, "rb") as f:
                out[rel] = f.read()
    return out


class MockHub:
    def __init__(self):
        self.repos = {}
        self.log = []
        self.lock = threading.Lock()
        self.cut_after = {}
        self.corrupt = set()
        self.stall_api = 0
        self.stall_file = {}
        self.delay_file = {}
        self.ignore_range = False
        self.release = threading.Event()  # set on stop(): ends every stall at once
        self.hub = self._server("hub")
        self.cdn = self._server("cdn")
        self.endpoint = "http://127.0.0.1:%d" % self.hub.server_address[1]
        self.cdn_base = "http://127.0.0.1:%d" % self.cdn.server_address[1]
        self.blobs = {}  # sha256 -> bytes, what the CDN serves
        self.threads = [threading.Thread(target=s.serve_forever, daemon=True)
                        for s in (self.hub, self.cdn)]
        for t in self.threads:
            t.start()

    # ------------------------------------------------------------------ setup
    def add_repo(self, name, files, token=None, branches=("main",)):
        """files: {path: bytes} or a folder. Returns the commit sha of the snapshot."""
        if isinstance(files, str):
            files = read_folder(files)
        commit = _commit_of(name, "main", files)
        snap = {"commit": commit, "files": dict(files)}
        revs = {b: snap for b in branches}
        revs[commit] = snap
        self.repos[name] = Repo(name, revs, token)
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def add_revision(self, name, rev, files):
        """Points branch/tag rev of an existing repo at a new snapshot; returns its commit."""
        if isinstance(files, str):
            files = read_folder(files)
        commit = _commit_of(name, rev, files)
        snap = {"commit": commit, "files": dict(files)}
        self.repos[name].revisions[rev] = snap
        self.repos[name].revisions[commit] = snap
        for data in files.values():
            self.blobs[hashlib.sha256(data).hexdigest()] = data
        return commit

    def requests(self, server=None):
        with self.lock:
            return [r for r in self.log if server is None or r["server"] == server]

    def clear_log(self):
        with self.lock:
            self.log.clear()

    def stop(self):
        self.release.set()
        for s in (self.hub, self.cdn):
            s.shutdown()
            s.server_close()

    # --------------------------------------------------------------- serving
    def _server(self, role):
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                rec = {"server": role, "method": "GET", "path": u.path, "query": u.query,
                       "range": self.headers.get("Range"),
                       "auth": self.headers.get("Authorization")}
                with hub.lock:
                    hub.log.append(rec)
                try:
                    if role == "cdn":
                        hub._cdn(self, u)
                    else:
                        hub._hub(self, u)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        return srv

    def _send_error(self, h, code, error_code, message):
        body = json.dumps({"error": message}).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("X-Error-Code", error_code)
        h.send_header("X-Error-Message", message)
        h.end_headers()
        h.wfile.write(body)

    def _auth_ok(self, h, repo):
        if repo.token is None:
            return True
        return h.headers.get("Authorization") == "Bearer " + repo.token

    def _hub(self, h, u):
        parts = [urllib.parse.unquote(p) for p in u.path.split("/")]
        # /api/models/{org}/{name}/revision/{rev}
        if len(parts) == 7 and parts[1:3] == ["api", "models"] and parts[5] == "revision":
            return self._listing(h, parts[3] + "/" + parts[4], parts[6], u.query)
        # /{org}/{name}/resolve/{rev}/{path...}
        if len(parts) >= 6 and parts[3] == "resolve":
            return self._resolve(h, parts[1] + "/" + parts[2], parts[4], "/".join(parts[5:]))
        return self._send_error(h, 404, "EntryNotFound", "no such route " + u.path)

    def _find(self, h, name, rev):
        repo = self.repos.get(name)
        if repo is None:
            self._send_error(h, 404, "RepoNotFound", "Repository not found")
            return None, None
        if not self._auth_ok(h, repo):
            self._send_error(h, 401, "GatedRepo",
                             "Access to model %s is restricted. You must have access to it "
                             "and be authenticated to access it. Please log in." % name)
            return None, None
        snap = repo.revisions.get(rev)
        if snap is None:
            self._send_error(h, 404, "RevisionNotFound", "Invalid rev id: " + rev)
            return None, None
        return repo, snap

    def _listing(self, h, name, rev, query):
        if self.stall_api:
            self.release.wait(self.stall_api)
        repo, snap = self._find(h, name, rev)
        if repo is None:
            return
        blobs = "blobs=true" in query.split("&")
        sib = []
        for path in sorted(snap["files"]):
            data = snap["files"][path]
            e = {"rfilename": path}
            if blobs:
                e["size"] = len(data)
                e["blobId"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                if path.endswith(LFS_SUFFIXES):
                    e["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                "pointerSize": 134}
            sib.append(e)
        body = json.dumps({"_id": "0" * 24, "id": name, "modelId": name, "sha": snap["commit"],
                           "private": False, "gated": "manual" if repo.token else False,
                           "library_name": "sentence-transformers", "siblings": sib}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _resolve(self, h, name, rev, path):
        repo, snap = self._find(h, name, rev)
        if repo is None:
            return
        data = snap["files"].get(path)
        if data is None:
            return self._send_error(h, 404, "EntryNotFound", "%s does not exist" % path)
        if path.endswith(LFS_SUFFIXES):
            sha = hashlib.sha256(data).hexdigest()
            h.send_response(302)
            h.send_header("Location", "%s/lfs/%s?path=%s&sig=x" % (
                self.cdn_base, sha, urllib.parse.quote(path, safe="")))
            h.send_header("X-Repo-Commit", snap["commit"])
            h.send_header("X-Linked-Size", str(len(data)))
            h.send_header("X-Linked-Etag", '"%s"' % sha)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        self._send_bytes(h, path, data)

    def _cdn(self, h, u):
        sha = u.path.rsplit("/", 1)[-1]
        data = self.blobs.get(sha)
        q = urllib.parse.parse_qs(u.query)
        if data is None:
            return self._send_error(h, 404, "EntryNotFound", "no such blob")
        self._send_bytes(h, q.get("path", [""])[0], data)

    def _send_bytes(self, h, path, data):
        if path in self.corrupt and data:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x5A
            data = bytes(b)
        start = 0
        rng = h.headers.get("Range")
        if rng and not self.ignore_range:
            spec = rng.strip()
            if not spec.startswith("bytes=") or "," in spec:
                return self._send_error(h, 416, "RangeNotSatisfiable", "bad range " + spec)
            a, _, b = spec[6:].partition("-")
            start = int(a)
            end = int(b) if b else len(data) - 1
            if start >= len(data) or end < start:
                h.send_response(416)
                h.send_header("Content-Range", "bytes */%d" % len(data))
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            body = data[start:end + 1]
            h.send_response(206)
            h.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(body) - 1,
                                                               len(data)))
        else:
            body = data
            h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        cut = self.cut_after.pop(path, None)
        stall = self.stall_file.pop(path, None)
        delay = self.delay_file.pop(path, None)
        if cut is not None:
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)  # the peer sees the connection end mid-body
            return
        if stall is not None:
            n, secs = stall
            h.wfile.write(body[:n])
            h.wfile.flush()
            self.release.wait(secs)
            h.close_connection = True
            return
        if delay is not None:
            n, secs = delay
            h.wfile.write(body[:n])
            h.wfile.flush()
            self.release.wait(secs)
            body = body[n:]
        h.wfile.write(body)
