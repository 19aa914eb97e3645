"""`python -m services.server.local_runner LOG EXIT`: run the job entrypoint with its output in LOG
and, when it ends, its exit status in EXIT (the local backend's record of the job)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from services.server.job_backend import ENTRY_MODULE


def main() -> int:
    log, exit_file = Path(sys.argv[1]), Path(sys.argv[2])
    with open(log, "ab", buffering=0) as out:
        child = subprocess.Popen(
            [sys.executable, "-m", ENTRY_MODULE], stdout=out, stderr=subprocess.STDOUT
        )
        # A stop (SIGTERM to our process group) reaches the child too; wait for it to end.
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        code = child.wait()
    tmp = exit_file.with_suffix(".tmp")
    tmp.write_text(str(code))
    os.replace(tmp, exit_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
