"""The script given to ``mitmdump -s``: composes the llama-metrics addons that live beside it.

    mitmdump --mode reverse:http://127.0.0.1:11434 -p 11435 -s addons/llama_metrics.py

Each addon owns one behaviour and the options of it (``mitmdump -s ... --options`` lists
them); what several of them read is in the one ``ProxyContext`` made here. Their hooks are
called in this order, through one ``HookChain`` (``hook_chain.py``): mitmproxy asks every addon
it holds for every event, which costs the event loop as much per request as the measuring.
"""

from __future__ import annotations

# mitmproxy loads this file as a script, not as part of a package; the package itself is
# installed (editable) in the venv by scripts/setup, so it imports like any other.
from addons.access import AccessControl
from addons.admission import Admission
from addons.admission_limits import AdmissionLimits
from addons.clients import ClientBudgets
from addons.context import ProxyContext
from addons.energy import Energy
from addons.error_pages import ErrorPages
from addons.exporter import Exporter
from addons.frozen_heap import FrozenHeap
from addons.history import History
from addons.hook_chain import HookChain
from addons.inventory_poll import InventoryPoll
from addons.listen import Listen
from addons.llama_config import LlamaConfig
from addons.recorder import CassetteRecorder
from addons.resource_poll import ResourcePoll
from addons.routes import ModelLabels
from addons.streaming_log import StreamingLog
from addons.tap import TrafficTap
from addons.upstream import UpstreamGuard


def compose() -> list[object]:
    """The addons, in hook order, sharing one context. (A function: mitmproxy would take any
    module-level name that is a hook's for a hook of this script.)"""
    context = ProxyContext()
    admission = Admission()
    tap = TrafficTap(
        context.metrics, ModelLabels(is_known=context.is_known, listed_name=context.listed_name),
        on_record=context.publish, admission=admission,
        energy=context.energy, on_complete=context.publish_completed,
    )
    # /requests has a request when it ends; the history writer, and after it the budgets
    # (which refresh their day from the file), once its energy is known.
    exporter = Exporter(context)
    history = History(context)
    budgets = ClientBudgets(context, history)
    return [
        # First: it resolves the file and the environment into the options of all the others.
        LlamaConfig(context),
        Listen(context),
        # mitmproxy's info line per streamed answer: out of the log, and off the first token's path.
        StreamingLog(),
        ErrorPages(),
        exporter,
        # Before the history: its done() hands the requests still waiting for a poll on.
        Energy(context),
        history,
        AdmissionLimits(context, admission),
        InventoryPoll(context),
        ResourcePoll(context),
        # The recorder sees each request as its client sent it, before the tap changes it;
        # the access check refuses in requestheaders after the tap's (which makes the state
        # it marks) and before the tap's request hook, so a refused request is never queued.
        CassetteRecorder(context.registry, tap=tap),
        tap,
        AccessControl(context, clients=budgets.clients),
        # After the access check named the client: one over its day's budget gets 429.
        budgets,
        # Its request hook sees a flow once admitted, ready to go upstream.
        UpstreamGuard(context.registry),
        # Last: its running() freezes what the others' running() made.
        FrozenHeap(),
    ]


addons = [HookChain(compose())]
