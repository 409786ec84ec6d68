"""A websocket client for the tests that keeps a message sent together with the handshake.

``simple_websocket.Client`` (1.1.0) reads the server's ``101`` answer and takes only its first
event from wsproto. When the server's first message came in the same read (the dashboard
sends its ``hello`` as soon as the connection is accepted), that message waits in wsproto's
buffer until more bytes arrive. The ``hello`` then shows up only after the next snapshot,
or, when the test waits for the ``hello`` before causing one, never. This client handles
what the handshake's read already held before its reader thread starts.
"""

from __future__ import annotations

from typing import Any

import simple_websocket


class Client(simple_websocket.Client):  # type: ignore[misc]
    def handshake(self) -> None:
        super().handshake()
        self.connected = self._handle_events()


def connect(url: str, **kwargs: Any) -> Client:
    client: Client = Client.connect(url, **kwargs)
    return client
