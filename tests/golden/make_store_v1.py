"""Wrote tests/golden/store-v1.db with the store code of commit 69e11d0 (before schema
versions were kept): ``python tests/golden/make_store_v1.py tests/golden/store-v1.db``.

Never run it again with newer code: the file stands for stores that exist already.
"""

import os
import sys

from runtime.store import Checkpoint, EntityCheckpoint, InstanceRecord, open_store

path = sys.argv[1]
if os.path.exists(path):
    os.remove(path)
store = open_store(f"sqlite:///{path}", "v1hub")
store.register_code("orchestrator", "wf", "1", b"code-blob")
record = InstanceRecord("i1", "wf", "1", "Running", "e1", 100.0, 100.0, b"in", host="pool-0")
store.create_instance(record, [b"ev0", b"ev1"], [b"msg"])
store.commit([Checkpoint("i1", "e1", [b"ev2"], 2, timers=[(5, 500.0)])])
store.commit_entities([EntityCheckpoint("Counter", "k", b"state", True, "client-1", 3, b"r")])
store.set_meta("spares", "h1")
store.close()
