"""Reading job logs in bounded memory (services/server/log_limits.py), without a service: the
last lines of a file read from its end, a follow that ends once its stream goes silent, and
one that ends with its job though the tail under it reads on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from services.server.log_limits import idle_limited, tail_file, until_ended


def test_tail_reads_the_last_lines_and_at_most_its_byte_cap(tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    log.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert tail_file(log, 3, 1 << 20) == "line 99997\nline 99998\nline 99999\n"
    endless = tmp_path / "one.log"
    endless.write_text("x" * 500_000)
    assert tail_file(endless, 10, 1000) == "x" * 1000 + "\n"


def test_a_silent_stream_ends_with_one_line_saying_why() -> None:
    async def stalls() -> AsyncIterator[str]:
        yield "started\n"
        await asyncio.sleep(3600)  # a job that prints nothing more
        yield "never\n"

    async def read() -> list[str]:
        return [chunk async for chunk in idle_limited(stalls(), 0.2)]

    chunks = asyncio.run(asyncio.wait_for(read(), 10))
    assert chunks[0] == "started\n" and len(chunks) == 2
    assert "no output for 0.2 s: the follow ends here" in chunks[1]


def test_a_stream_that_ends_is_passed_through_whole() -> None:
    async def short() -> AsyncIterator[str]:
        for i in range(3):
            await asyncio.sleep(0.01)
            yield f"{i}\n"

    async def read() -> list[str]:
        return [chunk async for chunk in idle_limited(short(), 1.0)]

    assert asyncio.run(read()) == ["0\n", "1\n", "2\n"]


def test_a_follow_ends_with_its_job_and_keeps_what_the_tail_had_not_read() -> None:
    """The tail under the follow has sent the first line and then waits, as Ray's does for
    seconds after a job's end; the job has ended and its log holds one more line. The follow
    ends now, with that line, and closes the tail."""
    log = "first\nlast\n"
    closed: list[bool] = []

    async def slow_tail() -> AsyncIterator[str]:
        try:
            yield "first\n"
            await asyncio.sleep(3600)
            yield "never\n"
        finally:
            closed.append(True)

    async def ended() -> bool:
        return True

    async def whole() -> str:
        return log

    async def read(tail: AsyncIterator[str]) -> str:
        return "".join([chunk async for chunk in until_ended(tail, ended, whole, 0.05)])

    assert asyncio.run(asyncio.wait_for(read(slow_tail()), 10)) == log
    assert closed == [True]

    async def quick_tail() -> AsyncIterator[str]:  # a tail that ends by itself is all there is
        yield log

    assert asyncio.run(asyncio.wait_for(read(quick_tail()), 10)) == log
