"""Serving-side SDK: emit tripwire events from a prediction service without slowing it down.

>>> from tripwire.client import Client
>>> client = Client()                                   # TRIPWIRE_KAFKA_BOOTSTRAP, topic tripwire.events
>>> request_id = client.log_prediction("fuel-efficiency", 31.2, features={"weight": 2190.0})  # doctest: +SKIP
>>> client.log_label("fuel-efficiency", request_id, 29.8)                                    # doctest: +SKIP
"""

from tripwire.client.aio import AsyncClient
from tripwire.client.producer import Client
from tripwire.client.recorder import DEFAULT_TOPIC, ClientStats, new_request_id

__all__ = ["AsyncClient", "Client", "ClientStats", "DEFAULT_TOPIC", "new_request_id"]
