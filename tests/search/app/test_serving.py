"""A registered model is also an MLflow pyfunc: ``mlflow models serve`` answers landmark
requests over HTTP (a real server process, a real request)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch

from search.app.registry import register
from search.layout import Layout
from search.records.tracking import Tracking
from tests.helpers import REPO, free_port, mlflow_url, tiny_config
from trainables.data.formats import symbols
from trainables.data.synth import SynthSpec, write_dataset
from trainables.eval.inference import predict_images
from trainables.eval.serving import LandmarkService
from trainables.models import create_model

pytestmark = pytest.mark.study
SERVE_TIMEOUT_S = 180


@pytest.fixture
def served(project):
    """A tiny model registered as ``served@champion`` through the registry, and two images."""
    tracking = Tracking(Layout.here(), writes=True)
    cfg = tiny_config(dataset_format="aariz", image_size=[64, 96])
    torch.manual_seed(0)
    model = create_model(cfg, 29)
    run_id = tracking.start_run("serving", "tiny", {}, {})
    register(tracking, "served", run_id, model, cfg, {"mre_mm": 2.0}, project)
    tracking.end_run(run_id)
    data = write_dataset(SynthSpec(n=3, width=80, height=100, seed=1), project / "d")
    images = sorted(data.glob("*/Cephalograms/*.png"))[:2]
    want = predict_images(model.eval(), images, cfg.image_size)
    return {"images": images, "want": want, "project": project}


def records(images: list[Path]) -> list[dict]:
    return [
        {"image": base64.b64encode(p.read_bytes()).decode(), "pixel_size_mm": 0.1} for p in images
    ]


def check(predictions: list[dict], want: np.ndarray) -> None:
    assert len(predictions) == len(want)
    for result, xy in zip(predictions, want, strict=True):
        assert list(result["landmarks"]) == list(symbols("aariz"))
        got = np.array([[p["x"], p["y"]] for p in result["landmarks"].values()])
        np.testing.assert_allclose(got, xy, atol=0.006)  # rounded to 0.01 px
        assert result["pixel_size_mm"] == 0.1


def test_the_registered_model_loads_as_a_pyfunc(served):
    with Tracking(Layout.here()).active():
        model = mlflow.pyfunc.load_model("models:/served@champion")
    check(model.predict(pd.DataFrame(records(served["images"]))), served["want"])


def test_the_service_has_run_the_model_once_before_its_first_request(served):
    """Loading warms the model up (on a GPU: the CUDA context, cuDNN's search, the copy to the
    device), so the first request pays none of it; then one pass per request."""
    with Tracking(Layout.here()).active():
        service = mlflow.pyfunc.load_model("models:/served@champion")._model_impl
    passes = []
    service.model.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    assert isinstance(service, LandmarkService) and service.precision.name == "fp32"
    fresh = LandmarkService(service.model, service.meta)
    assert passes == [1]  # the warm-up, on one blank image at the model's input size
    check(fresh.predict(records(served["images"])), served["want"])
    assert passes == [1, 2]


# Python without site processing, given the environment's packages as a plain folder: the
# editable install of cephtune (a .pth finder) is not seen, so nothing of this repository is
# importable but what the registered model carries (its code_paths).
ELSEWHERE = """
import json, sys
sys.path.append(sys.argv[1])
try:
    import trainables
except ImportError:
    pass
else:
    sys.exit(f"cephtune is importable here: {trainables.__file__}")
import mlflow.pyfunc
import pandas as pd
with open(sys.argv[2]) as f:
    requests = pd.DataFrame(json.load(f))
print(json.dumps(mlflow.pyfunc.load_model("models:/served@champion").predict(requests)))
"""


def test_the_registered_model_loads_where_cephtune_is_not_installed(served):
    import sysconfig

    elsewhere = served["project"] / "elsewhere"  # outside the repository
    elsewhere.mkdir()
    requests = elsewhere / "requests.json"
    requests.write_text(json.dumps(records(served["images"])))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MLFLOW_TRACKING_URI"] = mlflow_url(served["project"])
    site = sysconfig.get_paths()["purelib"]
    command = [sys.executable, "-I", "-S", "-c", ELSEWHERE, site, str(requests)]
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    check(json.loads(done.stdout.splitlines()[-1]), served["want"])


def test_mlflow_models_serve_answers_a_landmark_request(served):
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_url(served["project"]),
        "PYTHONPATH": str(REPO),
        # As in an activated environment: the server runs the environment's uvicorn.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli), "models", "serve", "-m", "models:/served@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    log = served["project"] / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while True:
            assert server.poll() is None, f"mlflow models serve exited: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"no answer in time: {log.read_text()[-2000:]}"
            time.sleep(1)
        body = json.dumps({"dataframe_records": records(served["images"])}).encode()
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            answer = json.loads(reply.read())
        check(answer["predictions"], served["want"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
