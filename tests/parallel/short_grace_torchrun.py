"""torchrun, with the SIGTERM -> SIGKILL grace it gives a worker when the job stops set by
the first argument instead of its fixed 30 s: ``python short_grace_torchrun.py 2 --standalone ...``.

Only the rank-hang test uses it, to wait 2 s instead of 30 for the rank it froze; the rest is
``python -m torch.distributed.run`` as users start it.
"""

import runpy
import sys

from torch.distributed.elastic.multiprocessing import api

if __name__ == "__main__":
    grace = int(sys.argv.pop(1))
    death_sig, _ = api.PContext.close.__defaults__  # (death_sig=None, timeout=30)
    api.PContext.close.__defaults__ = (death_sig, grace)
    runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
