"""Plain mitmdump without its line per streamed message: a second baseline (bench.py --quiet).

``mitmdump --set stream_large_bodies=1 -s scripts/quiet_plain.py`` is plain mitmdump with only
``addons/streaming_log.py`` loaded, the filter that leaves ``Streaming response from HOST.``
(and ``Streaming request to HOST.``) out of the log. Ours drops those lines too, so ours against
this is what our own hooks cost, with mitmproxy's logging the same on both sides; ours against
plain mitmdump is what a user gets by putting our proxy where a plain one was.
"""

from __future__ import annotations

from addons.streaming_log import StreamingLog

addons = [StreamingLog()]
