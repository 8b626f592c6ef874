"""The `fleetsim` command: a thin shell over the public API, one module per command group.

root.py      the app, the order of commands, main() (errors -> one line, exit status)
simulation   init, run, schema          study      sweep, plan, report
catalog      models, inspect, gpus      memory     kv, memory
fidelity     validate, calibrate        terminal, options, starter: what they share
"""

from fleetsim.cli.root import app, main

__all__ = ["app", "main"]
