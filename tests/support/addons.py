"""Our addons in mitmproxy's test context, started the way mitmdump starts a script's addons."""

from __future__ import annotations

from mitmproxy import hooks
from mitmproxy.test import taddons


class Script:
    """What mitmdump makes of ``llama_metrics.py``: one addon whose ``addons`` are ours."""

    def __init__(self, *addons: object) -> None:
        self.addons = list(addons)


def start(tctx: taddons.context, *addons: object, command_line: tuple[str, ...] = ()) -> Script:
    """Load ``addons`` as ``mitmdump -s`` does, with ``--set`` values in ``command_line``.

    mitmdump keeps the ``--set`` values of options nobody has declared yet, loads the script
    (every addon's ``load()``), applies the kept values, then configures the script's addons
    with every option named. Returns the script, for ``running`` and ``done``.
    """
    if command_line:
        tctx.options.set(*command_line, defer=True)
    script = Script(*addons)
    tctx.master.addons.add(script)
    tctx.master.addons.invoke_addon_sync(script, hooks.ConfigureHook(tctx.options.keys()))
    return script


def running(tctx: taddons.context, script: object) -> None:
    """mitmproxy's running hook: the proxy has started (async hooks are awaited)."""
    tctx.master.event_loop.run_until_complete(
        tctx.master.addons.invoke_addon(script, hooks.RunningHook())
    )


def done(tctx: taddons.context, script: object) -> None:
    tctx.master.event_loop.run_until_complete(
        tctx.master.addons.invoke_addon(script, hooks.DoneHook())
    )
