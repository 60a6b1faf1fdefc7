"""API keys: the key parsing and comparison on their own, then a Serve application with keys configured (two in
CLASSEMO_API_KEYS in the environment Ray starts with, one in an api_keys_file), over real HTTP on 127.0.0.1.

Not through the application's `runtime_env: env_vars`: Ray's runtime_env agent writes those to its log verbatim
(runtime_env_agent.log), which `test_keys_never_reach_the_logs` catches.
"""

import base64
import re
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

APP = "classemo"
REPO = Path(__file__).resolve().parents[2]
ENV_KEYS = ("env-key-Zq3Yx8", "env-key-Pt9Lm2")
FILE_KEY = "file-key-Hw7Rk4"
WRONG_KEY = "not-a-key-Vb5Nc1"


# -- keys without Ray ------------------------------------------------------------------------------------------


def test_keys_from_env_and_file_are_kept_as_digests(tmp_path):
    from serve.auth import KEYS_ENV, auth_problem, key_matches, load_key_digests

    path = tmp_path / "keys"
    path.write_text(f"# team keys\n\n  {FILE_KEY}  \n#{WRONG_KEY}\n")
    digests = load_key_digests(str(path), {KEYS_ENV: f" {ENV_KEYS[0]}, ,{ENV_KEYS[1]},{ENV_KEYS[0]}"})
    assert len(digests) == 3 and all(len(d) == 32 for d in digests)  # SHA-256, duplicates merged
    assert not any(k.encode() in d for d in digests for k in (*ENV_KEYS, FILE_KEY))
    assert all(key_matches(k, digests) for k in (*ENV_KEYS, FILE_KEY))
    assert not key_matches(WRONG_KEY, digests) and not key_matches(FILE_KEY[:-1], digests)
    assert load_key_digests(None, {}) == ()
    assert auth_problem(None, ()) is None  # no keys: open
    assert auth_problem(None, digests)[0].startswith("missing API key")
    assert auth_problem(f"Basic {FILE_KEY}", digests)[0].startswith("malformed")
    assert auth_problem(f"Bearer {WRONG_KEY}", digests)[0] == "invalid API key"
    assert auth_problem(f"bearer {FILE_KEY}", digests) is None


def test_a_keys_file_without_keys_is_an_error(tmp_path):
    from serve.auth import load_key_digests

    path = tmp_path / "keys"
    path.write_text("# nothing yet\n\n")
    with pytest.raises(ValueError, match="holds no key"):
        load_key_digests(str(path), {})
    with pytest.raises(FileNotFoundError):
        load_key_digests(str(tmp_path / "missing"), {})


# -- Serve with keys -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_environment():
    """`serve.*` lives at the repo root (PYTHONPATH, as in test_serve.py) and the keys are in CLASSEMO_API_KEYS: the
    Ray started next, and so every replica, inherits both, as from the environment of `ray start`."""
    import os
    import sys

    from serve.auth import KEYS_ENV

    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", KEYS_ENV)}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    os.environ[KEYS_ENV] = ",".join(ENV_KEYS)
    sys.path.insert(0, str(REPO))
    yield
    sys.path.remove(str(REPO))
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def server(ray_environment, ray_cluster, tmp_path_factory) -> str:
    import torch
    from helpers import free_port
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model

    root = tmp_path_factory.mktemp("auth")
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    ckpt = save_model_checkpoint(model, root / "ckpt", labels=LabelSet.paper(),
                                 face=FaceSettings(size=model.image_size))
    (root / "keys").write_text(f"# one key per line\n{FILE_KEY}\n")
    args = dict(model_uri=str(ckpt), min_replicas=1, max_replicas=1, torch_threads=1, max_body_bytes=1_000_000,
                max_video_bytes=5_000_000, inline_video_max_s=1.0, video_fps=4.0, debug_routes=True, dtype="float32",
                video_jobs_uri=str(root / "jobs"), api_keys_file=str(root / "keys"))
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    application = {"name": APP, "route_prefix": "/", "import_path": "serve.app:build_app", "args": args}
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[application]), _blocking=True)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _clip_body() -> dict:
    frame = np.random.default_rng(0).integers(0, 256, (48, 56, 3), dtype=np.uint8)
    return {"clips": [{"frames": [base64.b64encode(cv2.imencode(".png", frame)[1].tobytes()).decode()]}]}


def _walk(routes: list, prefix: str = ""):
    for route in routes:
        if hasattr(route, "original_router"):  # an included router (how Serve's ingress adds the class's routes)
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, getattr(route, "methods", None) or {"GET"}


def _routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every route the app has, so that a new route is covered without editing this."""
    from serve.gateway import app

    found = [(method, re.sub(r"\{[^}]+\}", "0" * 32, path))  # a path parameter: a well-formed job id
             for path, methods in _walk(app.routes) for method in sorted(methods) if method != "HEAD"]
    documented = {re.sub(r"\{[^}]+\}", "0" * 32, p) for p in app.openapi()["paths"]}
    assert documented <= {p for _, p in found}, "the route walk missed documented routes"
    return found


@pytest.mark.serve
@pytest.mark.ray
def test_every_protected_route_refuses_a_missing_malformed_or_wrong_key(client):
    from serve.auth import PUBLIC_PATHS

    routes = _routes()
    protected = [(m, p) for m, p in routes if p not in PUBLIC_PATHS] + [("GET", "/no/such/route")]
    assert {("POST", "/v1/clips"), ("POST", "/v1/videos"), ("GET", f"/v1/videos/{'0' * 32}/report"),
            ("POST", "/debug/crash")} <= set(protected)
    for method, path in protected:
        for headers, detail in (({}, "missing API key"), ({"Authorization": f"Basic {FILE_KEY}"}, "malformed"),
                                (_bearer(WRONG_KEY), "invalid API key"), ({"Authorization": "Bearer"}, "malformed")):
            r = client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
            assert r.json()["detail"].startswith(detail), (method, path, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
            assert WRONG_KEY not in r.text and FILE_KEY not in r.text
    # The key is checked before the body is read: an oversized body without a key is a 401, not a 413.
    r = client.post("/v1/clips", content=b"x" * 1_100_000, headers={"content-type": "application/json"})
    assert r.status_code == 401 and r.json()["detail"].startswith("missing API key")
    r = client.post("/v1/clips", content=b"x" * 1_100_000, headers={"content-type": "application/json",
                                                                    **_bearer(FILE_KEY)})
    assert r.status_code == 413


@pytest.mark.serve
@pytest.mark.ray
def test_health_and_docs_are_public_and_document_the_scheme(client):
    from serve.auth import PUBLIC_PATHS

    assert client.get("/healthz").status_code == 200
    for method, path in _routes():
        if path in PUBLIC_PATHS:
            assert client.request(method, path).status_code == 200, path
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["APIKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer") and "Authorization: Bearer" in scheme["description"]
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            want = None if path == "/healthz" else [{"APIKey": []}]
            assert operation.get("security") == want, path
            assert ("401" in operation["responses"]) == (path != "/healthz"), path


@pytest.mark.serve
@pytest.mark.ray
def test_every_configured_key_works(client):
    for key in (*ENV_KEYS, FILE_KEY):
        assert client.get("/v1/model", headers=_bearer(key)).status_code == 200, key
        r = client.post("/v1/clips", json=_clip_body(), headers=_bearer(key))
        assert r.status_code == 200, r.text
    r = client.get(f"/v1/videos/{'0' * 32}", headers={"Authorization": f"bearer {FILE_KEY}"})
    assert r.status_code == 404 and "no video job" in r.text  # past the key check, the route answers


@pytest.mark.serve
@pytest.mark.ray
def test_fuzz_openapi_with_a_valid_key_no_5xx(server, client):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    sent: list[int] = []
    for mode, examples in ((GenerationMode.POSITIVE, 80), (GenerationMode.NEGATIVE, 60)):
        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(generation_mode=mode))
        def fuzz(case) -> None:
            response = case.call(base_url=server, timeout=60, headers=_bearer(ENV_KEYS[1]))
            sent.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])

        fuzz()
    assert len(sent) >= 120, len(sent)
    assert any(s == 200 for s in sent) and any(400 <= s < 500 and s != 401 for s in sent)
    assert client.get("/v1/model", headers=_bearer(FILE_KEY)).status_code == 200


@pytest.mark.serve
@pytest.mark.ray
def test_keys_never_reach_the_logs(client):
    """After every test above (which sent each key many times), no Ray or Serve log file holds a key."""
    import ray

    logs = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    texts = [p.read_bytes() for p in logs.rglob("*") if p.is_file()]
    assert texts and any(b"API keys on: 3 key(s)" in t for t in texts)  # the replica's logs are there
    for key in (*ENV_KEYS, FILE_KEY, WRONG_KEY):
        assert not any(key.encode() in t for t in texts), key
