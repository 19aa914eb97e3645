"""How long Ray's job-log tail (`JobSubmissionClient.tail_job_logs`) takes to close once a
job has ended: the reason the service answers a follow of a finished job with its whole log
instead of Ray's tail (services/server/api/jobs.py).

    python experiments/ray_log_tail_close.py --runs 3

Starts a local Ray of its own with its dashboard: stop any other first (`ray stop`). Prints
one JSON line per run: the seconds from the job's end (as the client saw it) to the tail
closing, and from the start of a tail of a job already ended to its close.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


async def _drain(client, submission_id: str) -> float:
    start = time.monotonic()
    async for _ in client.tail_job_logs(submission_id):
        pass
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import ray
    from ray.job_submission import JobStatus, JobSubmissionClient

    ray.init(num_cpus=2, include_dashboard=True)
    client = JobSubmissionClient("http://127.0.0.1:8265")
    for run in range(args.runs):
        running = client.submit_job(entrypoint="sleep 2; echo done")
        followed = asyncio.run(_drain(client, running))
        ended = client.submit_job(entrypoint="echo hi")
        while client.get_job_status(ended) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
            time.sleep(0.1)
        after_end = asyncio.run(_drain(client, ended))
        line = {"run": run, "follow_of_a_2s_job_s": round(followed, 2),
                "tail_of_an_ended_job_s": round(after_end, 2), "ray": ray.__version__}  # fmt: skip
        print(json.dumps(line), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
