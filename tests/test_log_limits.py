"""Reading job logs in bounded memory (services/server/log_limits.py), without a service: the
last lines of a file read from its end, and a follow that ends once its stream goes silent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from services.server.log_limits import idle_limited, tail_file


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
