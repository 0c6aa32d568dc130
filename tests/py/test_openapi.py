"""test_openapi.py - the OpenAPI document of `medembed serve` is its contract.

A real server (generated model, an index, an API key) is checked against the document it
serves at GET /openapi.json (tools/server/openapi.json, embedded in the binary):

- the document and the /docs page are served, byte for byte the files of the repository;
- every documented path and method is dispatched, and every other method on it gets 405 with
  an Allow header listing exactly the documented methods (the route table itself is compared
  with the document by tests/unit/test_server_routes.c);
- schemathesis (PyPI, in its own environment: scripts/venv.sh) generates a bounded number of
  valid and invalid requests per operation, with and without the key, and checks that every
  response, errors included, has a documented status, content type, headers and body schema;
- headless Chromium (Debian's `chromium`) renders /docs, and the rendered page lists every
  operation of the document with each of its statuses.

Without schemathesis or chromium those tests skip visibly (fail with MEDEMBED_REQUIRE_PEERS=1).
MEDEMBED_SCHEMATHESIS_EXAMPLES bounds the examples per operation (default 100: about 10 s,
about a minute under ASan).
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from test_server import TEXTS, Server, _build_index, _generate  # noqa: E402

BIN = os.path.abspath(os.environ.get("MEDEMBED_BIN", os.path.join(REPO, "build", "medembed")))
KEY = "openapi-test-key"
AUTH = {"Authorization": "Bearer " + KEY}
ST_VENV = os.environ.get("MEDEMBED_ST_VENV", os.path.join(REPO, ".venv-schemathesis"))
REQUIRE = os.environ.get("MEDEMBED_REQUIRE_PEERS") == "1"
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


def missing(what):
    if REQUIRE:
        pytest.fail("%s (MEDEMBED_REQUIRE_PEERS=1)" % what)
    pytest.skip(what)


@pytest.fixture(scope="module")
def server():
    if not os.access(BIN, os.X_OK):
        pytest.skip("%s not built" % BIN)
    d = tempfile.mkdtemp(prefix="medembed-openapi-test-")
    model = os.path.join(d, "model")
    _generate(model)
    index = os.path.join(d, "index.db")
    _build_index(model, index, [("d%d" % i, t, {"year": 2000 + i}) for i, t in enumerate(TEXTS)])
    s = Server(model, "--index", index, env={"MEDEMBED_API_KEY": KEY})
    yield s
    assert s.close() == 0
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def doc():
    with open(os.path.join(REPO, "tools", "server", "openapi.json"), encoding="utf-8") as f:
        return json.load(f)


def operations(doc):
    return [(m.upper(), path) for path, item in doc["paths"].items() for m in item]


def test_document_and_page_served(server, doc):
    status, hdrs, body = server.request("GET", "/openapi.json")  # no key: public
    assert status == 200 and hdrs["Content-Type"] == "application/json"
    assert json.loads(body) == doc
    status, hdrs, body = server.request("GET", "/docs")
    assert status == 200 and hdrs["Content-Type"].startswith("text/html")
    with open(os.path.join(REPO, "tools", "server", "docs.html"), "rb") as f:
        assert body == f.read()


def raw_request(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        c.request(method, path, body=body, headers=dict(AUTH, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        return r.status, r.getheader("Allow"), r.getheader("Content-Type"), r.read()
    finally:
        c.close()


def test_every_documented_route_is_dispatched(server, doc):
    for path, item in doc["paths"].items():
        allowed = {m.upper() for m in item} | ({"HEAD"} if "get" in item else set())
        for method in METHODS:
            status, allow, ctype, body = raw_request(server.port, method, path)
            where = "%s %s" % (method, path)
            if method in allowed:
                assert status not in (404, 405), (where, status, body)
                continue
            assert status == 405, (where, status, body)
            assert set(a.strip() for a in allow.split(",")) == allowed, (where, allow)
            assert ctype == "application/json", (where, ctype)
            assert method == "HEAD" or json.loads(body)["error"], (where, body)
    # a path the document does not list is not served
    status, _, ctype, body = raw_request(server.port, "GET", "/v2/embeddings")
    assert status == 404 and ctype == "application/json" and json.loads(body)["error"]


def test_schemathesis(server):
    st = os.path.join(ST_VENV, "bin", "schemathesis")
    if not os.access(st, os.X_OK):
        missing("schemathesis not installed in %s (bash scripts/venv.sh)" % ST_VENV)
    n = os.environ.get("MEDEMBED_SCHEMATHESIS_EXAMPLES", "100")
    with tempfile.TemporaryDirectory(prefix="medembed-st-") as tmp:
        cmd = [st, "run", "http://127.0.0.1:%d/openapi.json" % server.port,
               # every check but positive_data_acceptance: a schema-valid body can still be
               # refused by limits the document cannot know (vocabulary size, token limit)
               "--checks", "all", "--exclude-checks", "positive_data_acceptance",
               "--header", "Authorization: Bearer " + KEY,
               "--max-examples", n, "--seed", "1", "--generation-database", "none",
               "--workers", "2", "--request-timeout", "60", "--no-color",
               "--report", "junit", "--report-dir", tmp]
        env = dict(os.environ, HOME=tmp, SCHEMATHESIS_HOOKS="")
        env.pop("LD_PRELOAD", None)  # the sanitizer runtime is for the server, not for Python
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp, env=env)
    out = r.stdout + r.stderr
    print(out[-3000:])
    assert r.returncode == 0, out[-12000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and int(m.group(1)) > 0 and m.group(1) == m.group(2), out[-3000:]


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_docs_page_renders_every_route(server, doc):
    exe = chromium()
    if not exe:
        missing("chromium not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="medembed-chromium-") as profile:
        env = dict(os.environ, HOME=profile)
        env.pop("LD_PRELOAD", None)
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                            "--user-data-dir=" + profile, "--virtual-time-budget=10000",
                            "--dump-dom", "http://127.0.0.1:%d/docs" % server.port],
                           capture_output=True, text=True, timeout=120, env=env)
    dom = r.stdout
    assert r.returncode == 0 and 'data-rendered="1"' in dom, (r.returncode, r.stderr[-2000:], dom[-2000:])
    sections = re.findall(r'<section class="op" id="[^"]*"><h3><span class="method \w+">(\w+)</span> '
                          r'<code class="path">([^<]*)</code></h3>(.*?)</section>', dom, re.S)
    rendered = {(m, p): body for m, p, body in sections}
    assert sorted(rendered) == sorted(operations(doc))
    for (method, path), body in rendered.items():
        statuses = re.findall(r'<tr class="status"><td>(\d{3})</td>', body)
        want = sorted(doc["paths"][path][method.lower()]["responses"])
        assert sorted(statuses) == want, (method, path)
