"""Run a command and write its own peak RSS (bytes) to a file: python -m benchmarks.peak_rss OUT CMD...

The benchmark process holds GBs of models; a child forked from it starts with that RSS counted in
its ru_maxrss. Forking the measured command from this small launcher keeps the number honest.
"""

from __future__ import annotations

import os
import subprocess
import sys


def main() -> None:
    out, command = sys.argv[1], sys.argv[2:]
    proc = subprocess.Popen(command)
    _, status, usage = os.wait4(proc.pid, 0)
    with open(out, "w") as handle:
        handle.write(str(usage.ru_maxrss * 1024))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
