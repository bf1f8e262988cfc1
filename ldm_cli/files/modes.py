"""The permission bits a new output file gets: what `open()` would give it (0666 minus the umask).

Temporary files (mkstemp) and safetensors' own writer create files 0600; outputs must be readable
as any other file the user makes, so each writer sets the normal mode before publishing the file.
"""

from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (/proc), else set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normal_file_mode() -> int:
    return 0o666 & ~current_umask()


def give_normal_mode(path: Path) -> None:
    """chmod `path` (a file, or every file and folder under it) to the mode a plain new file or folder gets."""
    path = Path(path)
    mask = current_umask()
    if path.is_dir():
        for folder, _dirs, files in os.walk(path):
            os.chmod(folder, 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)
