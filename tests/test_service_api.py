"""The control service over real HTTP without Ray: uvicorn on 127.0.0.1 with the local job
backend (jobs as child processes), on SQLite and on a real PostgreSQL job store. Auth,
validation, idempotency, pagination, cancel and delete; the Ray-backed path is in
tests/test_service.py."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.service_process import wait_for_state


def _ingest(service, out: str, source: str = "synthetic:60", **extra) -> dict:
    spec = {"source": source, "out": str(service.data_root / out), **extra}
    return {"kind": "ingest", "spec": spec}


def test_auth_and_health(local_service) -> None:
    assert httpx.get(f"{local_service.url}/v1/jobs").status_code == 401
    wrong = httpx.get(f"{local_service.url}/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    health = httpx.get(f"{local_service.url}/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "ray": "ok", "mlflow": "ok", "database": "ok"}
    assert httpx.get(f"{local_service.url}/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"kind": "train", "spec": {}}, "kind"),
        ({"kind": "pretrain", "spec": {"data": "x", "preset": "huge"}}, "unknown preset"),
        ({"kind": "pretrain", "spec": {"data": "x", "mask_fraction": 2}}, "mask_fraction"),
        ({"kind": "pretrain", "spec": {"data": "x", "workers": -1}}, "workers"),
        ({"kind": "pretrain", "spec": {"data": "x", "batch_size": "many"}}, "batch_size"),
        (
            {"kind": "sweep", "spec": {"data": "x", "fractions": [0.1, 1.5], "inits": ["scratch"]}},
            "fractions",
        ),
        ({"kind": "pretrain", "spec": {"data": "/etc"}}, "outside the allowed data roots"),
        ({"kind": "pretrain", "spec": {"data": "../../etc"}}, "outside the allowed data roots"),
    ],
)
def test_bad_specs_are_4xx_naming_the_field(local_service, body: dict, needle: str) -> None:
    with local_service.client() as client:
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.json()["detail"]


def test_malformed_oversized_and_unknown(local_service) -> None:
    with local_service.client() as client:
        bad_json = client.post(
            "/v1/jobs", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert bad_json.status_code == 422 and "detail" in bad_json.json()
        huge = client.post("/v1/jobs", content=b"x" * 70_000)
        assert huge.status_code == 413 and "limit" in huge.json()["detail"]
        missing = client.get("/v1/jobs/nosuchjob")
        assert missing.status_code == 404 and "nosuchjob" in missing.json()["detail"]
        assert client.get("/v1/jobs", params={"cursor": "garbage"}).status_code == 422
        assert client.get("/v1/runs/nosuchrun").status_code == 404


def test_weights_reference_is_typed_and_held_to_the_roots(local_service) -> None:
    """`pretrained: ".."` is a path (not a guess between path and run id) and lies outside
    the data roots; a run id is accepted as one."""
    spec = {"data": str(local_service.data_root / "d"), "inits": ["selfie"]}
    with local_service.client() as client:
        outside = client.post(
            "/v1/jobs", json={"kind": "sweep", "spec": {**spec, "pretrained": ".."}}
        )
        assert outside.status_code == 422
        assert "spec.pretrained.0.path" in outside.json()["detail"]
        bad_run = {**spec, "pretrained": {"run_id": "nothex"}}
        assert client.post("/v1/jobs", json={"kind": "sweep", "spec": bad_run}).status_code == 422


def test_an_ingest_job_runs_to_its_result(local_service) -> None:
    with local_service.client() as client:
        created = client.post("/v1/jobs", json=_ingest(local_service, "d1"))
        assert created.status_code == 201, created.text
        job = wait_for_state(client, created.json()["id"], {"SUCCEEDED", "FAILED"})
        assert job["state"] == "SUCCEEDED", client.get(f"/v1/jobs/{job['id']}/logs").text
        assert job["result"]["counts"]["train"] > 0 and job["result"]["skipped"] == 0
        assert "SELFIE_RESULT" in client.get(f"/v1/jobs/{job['id']}/logs").text
        again = client.post("/v1/jobs", json=_ingest(local_service, "d1"))
        failed = wait_for_state(client, again.json()["id"], {"SUCCEEDED", "FAILED"})
        assert failed["state"] == "FAILED" and "--overwrite" in failed["message"]
        assert (local_service.data_root / "d1" / "manifest.json").is_file()  # nothing lost


def test_idempotency_key_admits_one_job_under_concurrent_posts(local_service) -> None:
    body = _ingest(local_service, "idem")
    answers: list[httpx.Response] = []

    def post() -> None:
        with local_service.client() as client:
            answers.append(client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "once"}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1, [a.text for a in answers]
    assert sorted(a.status_code for a in answers) == [200] * 5 + [201]
    with local_service.client() as client:
        wait_for_state(client, ids.pop(), {"SUCCEEDED", "FAILED"})


def test_pages_list_every_job_once_newest_first(local_service) -> None:
    with local_service.client() as client:
        made = [
            client.post("/v1/jobs", json=_ingest(local_service, f"p{i}")).json()["id"]
            for i in range(5)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 2, "kind": "ingest", **({"cursor": cursor} if cursor else {})}
            page = client.get("/v1/jobs", params=params).json()
            seen += [j["id"] for j in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen))
        mine = [j for j in seen if j in made]
        assert mine == list(reversed(made))
        assert client.get("/v1/jobs", params={"cursor": "bogus"}).status_code == 422
        for job_id in made:
            wait_for_state(client, job_id, {"SUCCEEDED", "FAILED"})
        done = client.get("/v1/jobs", params={"state": "SUCCEEDED", "limit": 500}).json()
        assert set(made) <= {j["id"] for j in done["items"]}


def test_delete_refuses_a_running_job_then_cancel_stops_it(local_service) -> None:
    with local_service.client() as client:
        body = _ingest(local_service, "long", source="synthetic:400000")
        job = client.post("/v1/jobs", json=body).json()
        wait_for_state(client, job["id"], {"RUNNING"})
        conflict = client.delete(f"/v1/jobs/{job['id']}")
        assert conflict.status_code == 409 and "cancel it first" in conflict.json()["detail"]
        assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["state"] == "STOPPED"
        time.sleep(1.5)  # the reconciler must not resurrect it
        assert client.get(f"/v1/jobs/{job['id']}").json()["state"] == "STOPPED"
        assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert not (local_service.data_root / "long" / "manifest.json").exists()
