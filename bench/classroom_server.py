"""``python -m bench.classroom_server run dashboard.py …``: ``streamlit run`` with one more way in.

The classroom bench drives some of its sessions from real browsers and submits the rest from
the driver. Those must reach the job service the pages use, which lives in the server process:
this launcher starts Streamlit exactly as its own CLI does and reads run settings from stdin,
one JSON object per line, submitting each to that same service as the Train page's Start does.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import TextIO


def submit_lines(lines: TextIO) -> None:
    """Queue one run per line of ``TrainConfig`` fields, in this server's job service and run store."""
    from softmax_core.config import TrainConfig
    from softmax_core.jobs import shared_service
    from softmax_core.runs import RunStore, default_root

    store = RunStore(default_root())
    for line in lines:
        run_id = shared_service().submit(store, TrainConfig.from_dict(json.loads(line)))
        print(f"classroom_server: submitted {run_id}", file=sys.stderr, flush=True)


def main() -> None:
    from streamlit.web import cli

    threading.Thread(target=submit_lines, args=(sys.stdin,), name="classroom-submit", daemon=True).start()
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
