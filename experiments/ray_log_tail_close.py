"""How long Ray's job-log tail (`JobSubmissionClient.tail_job_logs`) takes to close once a
job has ended: the reason the service answers a follow of a finished job with its whole log
instead of Ray's tail (services/server/api/jobs.py), and closes its follow of a running job
itself once Ray reports it ended (`RayJobs.follow_logs`, services/server/ray_backend.py).

    python experiments/ray_log_tail_close.py --runs 3

Starts a local Ray of its own with its dashboard: stop any other first (`ray stop`). Prints
one JSON line per run: the seconds a follow of a 2-second job takes through Ray's tail and
through the service's follow (each on a job of its own; both also check the whole output
came through), and from the start of a tail of a job already ended to its close.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

JOB = "echo first; sleep 2; echo last"


async def _drain(chunks) -> tuple[float, str]:
    start, text = time.monotonic(), ""
    async for chunk in chunks:
        text += chunk
    return time.monotonic() - start, text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    from services.server.ray_backend import RayJobs
    from services.server.settings import ServiceSettings

    ray.init(num_cpus=2, include_dashboard=True)
    url = "http://127.0.0.1:8265"
    client = JobSubmissionClient(url)
    service = RayJobs(ServiceSettings(), url)
    for run in range(args.runs):
        theirs = client.submit_job(entrypoint=JOB)
        followed, by_ray = asyncio.run(_drain(client.tail_job_logs(theirs)))
        ours = client.submit_job(entrypoint=JOB)
        by_us_s, by_us = asyncio.run(_drain(service.follow_logs(ours)))
        ended = client.submit_job(entrypoint="echo hi")
        while client.get_job_status(ended) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            time.sleep(0.1)
        after_end, _ = asyncio.run(_drain(client.tail_job_logs(ended)))
        line = {"run": run, "ray_follow_of_a_2s_job_s": round(followed, 2),
                "service_follow_of_a_2s_job_s": round(by_us_s, 2),
                "both_whole": by_ray == client.get_job_logs(theirs)
                and by_us == client.get_job_logs(ours),
                "tail_of_an_ended_job_s": round(after_end, 2), "ray": ray.__version__}  # fmt: skip
        print(json.dumps(line), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
