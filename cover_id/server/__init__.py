"""The HTTP service behind ``cover-id serve``: API, web page, live collection changes.

Only imported when the service runs (it pulls in FastAPI, numpy and the models).
"""

from __future__ import annotations

from cover_id.server.app import create_app
from cover_id.server.collection import Collection
from cover_id.server.runner import RunningServer, bind_socket, start_in_thread

__all__ = ["Collection", "RunningServer", "bind_socket", "create_app", "start_in_thread"]
