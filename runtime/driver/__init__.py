"""The driver side: what a Python driver, the ``durable`` CLI and the HTTP API run.

- ``client``: DurableClient (start, query, steer instances; signal and call entities);
- ``hub``: ``Runtime.start`` / ``register`` / ``shutdown``;
- ``cluster``: which Ray cluster a driver joins, and the record of where a hub is served;
- ``cli``: the ``durable`` command line; ``http_api``: the Durable Functions HTTP API on
  Ray Serve; ``http_json``: the one JSON view of instances, histories and entities.
"""
