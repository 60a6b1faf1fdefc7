"""The classemo Serve application on a real local Ray, over real HTTP on 127.0.0.1.

One Ray and one deployed application per module (starting them costs seconds); the tests run in file order and
the destructive ones (model switch, autoscaling, replica crash) come last.
"""

import base64
import concurrent.futures as cf
import json
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from helpers import MEDIA

pytestmark = [pytest.mark.serve, pytest.mark.ray]

TOL = 1e-5  # float32 on both sides: the 1e-5 parity is an fp32 property (bf16 varies with batch size)
APP = "classemo"
REPO = Path(__file__).resolve().parents[2]


def _checkpoint(directory: Path, seed: int) -> Path:
    import torch

    from classemo.checkpoint import save_model_checkpoint
    from classemo.faces import FaceSettings
    from classemo.labels import LabelSet
    from classemo.models import create_model

    torch.manual_seed(seed)
    model = create_model("classemo_tiny", num_classes=7)
    return save_model_checkpoint(model, directory, labels=LabelSet.paper(), face=FaceSettings(size=model.image_size))


def _png(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]) if image.ndim == 3 else image)
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def _jpeg(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return base64.b64encode(buf.tobytes()).decode()


def _frames(rng: np.random.Generator, n: int, size: int = 48) -> list[np.ndarray]:
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


def _valid_body(rng: np.random.Generator | None = None) -> dict:
    rng = rng or np.random.default_rng(0)
    return {"clips": [{"frames": [_png(f) for f in _frames(rng, 3)]}]}


def _replicas(deployment: str = "ClassEmoModel") -> int:
    from ray import serve

    states = serve.status().applications[APP].deployments[deployment].replica_states
    return int(sum(v for k, v in states.items() if str(getattr(k, "value", k)) == "RUNNING"))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return _checkpoint(root / "a", 0), _checkpoint(root / "b", 1)


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory) -> Path:
    """The video job store of this module's app (the default would be under the home directory)."""
    return tmp_path_factory.mktemp("video-jobs")


def _args(model_uri: Path, jobs_dir: Path) -> dict:
    return dict(model_uri=str(model_uri), max_batch_size=8, batch_wait_timeout_s=0.05, min_replicas=1,
                max_replicas=2, target_ongoing_requests=2, upscale_delay_s=0.5, downscale_delay_s=2.0,
                look_back_period_s=1.0, max_ongoing_requests=8, max_queued_requests=64, torch_threads=1,
                model_num_cpus=1, health_check_period_s=1.0, health_check_timeout_s=5.0,
                max_body_bytes=1_000_000, max_video_bytes=5_000_000, max_clips_per_request=4,
                inline_video_max_s=1.0, video_fps=4.0, debug_routes=True, dtype="float32",
                video_jobs_uri=str(jobs_dir))


def _deploy(args: dict, model_uri: Path | None = None) -> None:
    """Apply a declarative config, as `serve run serve/config.yaml` / `serve deploy` do (the dashboard's REST API
    ends in the same controller call). A `deployments:` user_config override switches the model through
    `reconfigure`; the args (and so the code version) stay the same, so no replica restarts."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from serve.schemas import ServeArgs

    app = {"name": APP, "route_prefix": "/", "import_path": "serve.app:build_app", "args": args}
    if model_uri is not None:
        user_config = {**ServeArgs(**args).model_user_config(), "model_uri": str(model_uri)}
        app["deployments"] = [{"name": "ClassEmoModel", "user_config": user_config}]
    _get_global_client().deploy_apps(ServeDeploySchema(applications=[app]), _blocking=True)


@pytest.fixture(scope="module")
def server(repo_on_path, ray_cluster, checkpoints, jobs_dir) -> str:
    from helpers import free_port
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    _deploy(_args(checkpoints[0], jobs_dir))
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=60) as c:
        yield c


def _assert_serving(client: httpx.Client) -> None:
    r = client.post("/v1/clips", json=_valid_body())
    assert r.status_code == 200, r.text


# -- correctness -----------------------------------------------------------------------------------------------


def test_clips_match_predictor(client, checkpoints):
    from classemo.data.transforms import decode_image
    from classemo.predictor import Predictor

    rng = np.random.default_rng(1)
    clips = [_frames(rng, 1), _frames(rng, 5, 40), _frames(rng, 8, 72)]
    encoded = [[_png(f) for f in clips[0]], [_jpeg(f) for f in clips[1]], [_png(f) for f in clips[2]]]
    r = client.post("/v1/clips", json={"clips": [{"frames": e} for e in encoded]})
    assert r.status_code == 200, r.text
    body = r.json()
    predictor = Predictor.from_checkpoint(checkpoints[0], device="cpu", dtype="float32")
    # The server sees the decoded bytes (JPEG is lossy), so the reference decodes them the same way.
    direct = predictor.predict([[decode_image(base64.b64decode(s)) for s in e] for e in encoded])
    assert body["model"]["source"] == str(checkpoints[0])
    assert len(body["predictions"]) == 3
    for got, want in zip(body["predictions"], direct):
        assert got["label"] == want.label
        np.testing.assert_allclose([got["probs"][n] for n in predictor.labels], want.probs, atol=TOL)
        np.testing.assert_allclose(got["frame_probs"], want.frame_probs, atol=TOL)
        np.testing.assert_allclose([got["valence"], got["arousal"]], [want.valence, want.arousal], atol=TOL)
        np.testing.assert_allclose(got["frame_valence"], want.frame_valence, atol=TOL)
        np.testing.assert_allclose(got["frame_arousal"], want.frame_arousal, atol=TOL)
        assert got["faces"] is None


def test_detect_faces_uses_the_models_face_path(client, checkpoints):
    """Serve crops with the checkpoint's face settings (YuNet, aligned), exactly as the converters and analyze do:
    its prediction for a whole photo equals the model's on the face path's own crop."""
    from classemo.faces import FacePath
    from classemo.predictor import Predictor

    photo = MEDIA / "single_face.jpg"
    local = Predictor.from_checkpoint(checkpoints[0], device="cpu", dtype="float32")
    (face,) = FacePath(local.face_settings).faces(cv2.imread(str(photo)))
    assert face.aligned
    data = base64.b64encode(photo.read_bytes()).decode()
    blank = _png(np.full((64, 64, 3), 127, np.uint8))
    r = client.post("/v1/clips", json={"clips": [{"frames": [data, blank]}], "detect_faces": True})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"][0]
    box = got["faces"][0]
    assert {k: box[k] for k in "xywh"} == {"x": face.box.x, "y": face.box.y, "w": face.box.w, "h": face.box.h}
    # The face path's reading of that face comes with it: a frontal photo faces the front and can be read.
    assert box["attention"] == "front" and box["readable"] and box["unread_reason"] == ""
    assert all(isinstance(box[k], float) for k in ("yaw", "pitch", "roll", "sharpness"))
    assert got["faces"][1] is None  # no face: the whole frame is used, and the response says so
    want = local.predict([[face.crop[:, :, ::-1], np.full((64, 64, 3), 127, np.uint8)]])[0]
    np.testing.assert_allclose(list(got["probs"].values()), want.probs, atol=TOL)


def test_model_health_and_openapi(client, checkpoints):
    info = client.get("/v1/model").json()
    assert info["labels"] == ["fear", "anger", "disgust", "happy", "sad", "positive", "neutral"]
    assert info["preprocessing"]["num_frames"] == 8 and info["source"] == str(checkpoints[0])
    assert info["dtype"] == "float32" and info["dtype_calibration"] is None  # the fixture pins float32
    assert client.get("/healthz").json()["status"] == "ok"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/clips", "/v1/videos", "/v1/videos/{job_id}", "/v1/videos/{job_id}/report", "/v1/model",
            "/healthz"} <= set(paths)
    assert "/debug/crash" not in paths
    assert client.get("/docs").status_code == 200


def test_concurrent_requests_are_batched(server, client):
    rng = np.random.default_rng(2)
    bodies = [_valid_body(rng) for _ in range(24)]

    def post(body: dict) -> dict:
        with httpx.Client(base_url=server, timeout=60) as c:
            r = c.post("/v1/clips", json=body)
            assert r.status_code == 200, r.text
            return r.json()

    with cf.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(post, bodies))
    sizes = [res["predictions"][0]["batch_size"] for res in results]
    assert max(sizes) > 1, sizes
    stats = client.get("/v1/stats").json()
    assert stats["max_batch_size_seen"] > 1 and stats["max_batch_size_seen"] <= stats["max_batch_size"] == 8
    assert stats["clips"] >= stats["batches"]


def test_greyscale_and_alpha_frames_are_read_as_training_reads_them(client, checkpoints):
    """Grey is expanded to three channels and alpha dropped, by the same decode as training (no 422 for either)."""
    from classemo.data.transforms import decode_image
    from classemo.predictor import Predictor

    rng = np.random.default_rng(6)
    grey, rgba = rng.integers(0, 256, (40, 48), dtype=np.uint8), rng.integers(0, 256, (40, 48, 4), dtype=np.uint8)
    encoded = [base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode() for image in (grey, rgba)]
    r = client.post("/v1/clips", json={"clips": [{"frames": encoded}]})
    assert r.status_code == 200, r.text
    predictor = Predictor.from_checkpoint(checkpoints[0], device="cpu", dtype="float32")
    want = predictor.predict([[decode_image(base64.b64decode(s)) for s in encoded]])[0]
    np.testing.assert_allclose(r.json()["predictions"][0]["frame_probs"], want.frame_probs, atol=TOL)


# -- bad input never takes a replica down ----------------------------------------------------------------------


BAD_JSON = [
    ("not base64", {"clips": [{"frames": ["@@@not*base64@@@"]}]}, "not valid base64"),
    ("not an image", {"clips": [{"frames": [base64.b64encode(b"hello, this is text").decode()]}]},
     "not a decodable PNG/JPEG"),
    ("too small", {"clips": [{"frames": [_png(np.zeros((4, 4, 3), np.uint8))]}]}, "between 8 and"),
    ("zero frames", {"clips": [{"frames": []}]}, "zero frames"),
    ("too many frames", {"clips": [{"frames": [_png(np.zeros((16, 16, 3), np.uint8))] * 9}]}, "num_frames=8"),
    ("no clips", {"clips": []}, "no clips"),
    ("too many clips", {"clips": [{"frames": [_png(np.zeros((16, 16, 3), np.uint8))]}] * 5}, "limit is 4"),
    ("wrong type", {"clips": [{"frames": [3]}]}, "string"),
    ("missing field", {"frames": []}, "clips"),
]


@pytest.mark.parametrize("name,body,message", BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_bad_clip_input_is_a_4xx_naming_the_problem(client, name, body, message):
    r = client.post("/v1/clips", json=body)
    assert r.status_code == 422, r.text
    assert message in r.text
    _assert_serving(client)


def test_one_bad_clip_names_its_index(client):
    good = _valid_body()["clips"][0]
    r = client.post("/v1/clips", json={"clips": [good, {"frames": ["%%%"]}]})
    assert r.status_code == 422 and "clip 1, frame 0" in r.text


def test_malformed_json(client):
    r = client.post("/v1/clips", content=b'{"clips": [', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "json" in r.text.lower()
    _assert_serving(client)


def test_oversized_payload_by_content_length(client):
    big = json.dumps({"clips": [{"frames": ["A" * 1_100_000]}]}).encode()
    r = client.post("/v1/clips", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than the limit of 1000000 bytes" in r.text
    _assert_serving(client)


def test_oversized_payload_streamed_without_content_length(client):
    def chunks():
        yield b'{"clips": [{"frames": ["'
        for _ in range(40):
            yield b"A" * 50_000
        yield b'"]}]}'

    r = client.post("/v1/clips", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    _assert_serving(client)


def test_unsupported_video_is_415(client):
    r = client.post("/v1/videos", files={"file": ("lecture.mp4", b"\x00\x01garbage" * 100, "video/mp4")})
    assert r.status_code == 415 and "unsupported video 'lecture.mp4'" in r.text
    r = client.post("/v1/videos", files={"file": ("empty.mp4", b"", "video/mp4")})
    assert r.status_code == 422 and "empty" in r.text
    assert client.get("/v1/videos/nope").status_code == 404
    _assert_serving(client)


def test_debug_route_is_off_by_default(repo_on_path):
    from serve.schemas import ServeArgs

    assert ServeArgs().debug_routes is False


# -- videos ----------------------------------------------------------------------------------------------------


def _video(path: Path, seconds: float, fps: int = 8) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    rng = np.random.default_rng(3)
    for _ in range(int(seconds * fps)):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    return path


def test_short_video_inline_long_video_as_job(client, tmp_path, jobs_dir):
    short = _video(tmp_path / "short.mp4", 0.5)
    r = client.post("/v1/videos", files={"file": ("short.mp4", short.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "done" and "summary" in job["result"] and "timeline" in job["result"]
    assert job["result"]["summary"]["video"]["path"] == "upload.mp4"

    long = _video(tmp_path / "long.mp4", 2.0)
    r = client.post("/v1/videos", files={"file": ("long.mp4", long.read_bytes(), "video/mp4")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"/v1/videos/{job_id}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.2)
    assert job["status"] == "done", job
    assert job["result"]["summary"]["video"]["decoded_frames"] >= 8
    assert (jobs_dir / job_id / "job.json").is_file()  # the job lives in the store, not in the ingress


# -- fuzzing ---------------------------------------------------------------------------------------------------


def test_fuzz_openapi_no_5xx(server, client):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    sent: list[int] = []

    for mode, examples in ((GenerationMode.POSITIVE, 130), (GenerationMode.NEGATIVE, 100)):
        @settings(max_examples=examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=schema.as_strategy(generation_mode=mode))
        def fuzz(case) -> None:
            response = case.call(base_url=server, timeout=60)
            sent.append(response.status_code)
            assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])

        fuzz()
    assert len(sent) >= 200, len(sent)
    assert any(s == 200 for s in sent) and any(400 <= s < 500 for s in sent)
    _assert_serving(client)


# -- model switch, autoscaling, recovery -----------------------------------------------------------------------


def test_reconfigure_switches_model_without_downtime(server, client, checkpoints, jobs_dir):
    from classemo.predictor import Predictor

    body = _valid_body(np.random.default_rng(4))
    codes: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server, timeout=60) as c:
            while not stop.is_set():
                codes.append(c.post("/v1/clips", json=body).status_code)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        _deploy(_args(checkpoints[0], jobs_dir), model_uri=checkpoints[1])
        deadline = time.monotonic() + 30
        while client.get("/v1/model").json()["source"] != str(checkpoints[1]) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join()
    assert len(codes) > 3 and set(codes) == {200}, codes
    r = client.post("/v1/clips", json=body).json()
    assert r["model"]["source"] == str(checkpoints[1])
    frames = [cv2.imdecode(np.frombuffer(base64.b64decode(s), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
              for s in body["clips"][0]["frames"]]
    want = Predictor.from_checkpoint(checkpoints[1], device="cpu", dtype="float32").predict([frames])[0]
    np.testing.assert_allclose(list(r["predictions"][0]["probs"].values()), want.probs, atol=TOL)


def test_autoscaling_up_and_down(server, client):
    assert _replicas() == 1
    stop = threading.Event()
    body = _valid_body(np.random.default_rng(5))

    def load() -> None:
        with httpx.Client(base_url=server, timeout=60) as c:
            while not stop.is_set():
                c.post("/v1/clips", json=body)

    workers = [threading.Thread(target=load) for _ in range(12)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 60
        while _replicas() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        peak = _replicas()
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert peak == 2
    deadline = time.monotonic() + 60
    while _replicas() > 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _replicas() == 1
    _assert_serving(client)


def test_crashed_replica_is_replaced(client):
    r = client.post("/debug/crash")
    assert r.status_code == 200 and r.json()["crashed"] == "model", r.text
    started = time.monotonic()
    deadline = started + 60
    status = None
    while time.monotonic() < deadline:
        status = client.post("/v1/clips", json=_valid_body()).status_code
        if status == 200:
            break
        assert status == 503  # while the replica is replaced: a retryable error, never a hang or a 500
        time.sleep(0.25)
    assert status == 200
    assert time.monotonic() - started < 30
