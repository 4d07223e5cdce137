"""Wrote tests/golden/store-v2.db with the store code of commit aa2ed18 (schema version 2,
before out-of-line payloads): ``python tests/golden/make_store_v2.py tests/golden/store-v2.db``.

Real histories, written by a HostCore running ``test_host.chain`` with in-process
activities: ``done`` doubled a 100,000-character string twice (its input, results and
output stored inline, as version 2 stored everything); ``open`` stopped with its second
activity dispatched and unanswered, so a newer store can resume it. Never run it again with
newer code: the file stands for stores that exist already.
"""

import asyncio
import os
import sqlite3
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from test_host import FakeActors, chain, double  # noqa: E402

from runtime.actors.hosts import HostCore  # noqa: E402
from runtime.orchestration import history as h  # noqa: E402
from runtime.orchestration.codec import decode_event, encode_event  # noqa: E402
from runtime.registry import encode_code  # noqa: E402
from runtime.serialization import dumps  # noqa: E402
from runtime.store import EntityCheckpoint, InstanceRecord, open_store  # noqa: E402

HUB = "v2hub"
BIG = "x" * 100_000

path = os.path.abspath(sys.argv[1])
if os.path.exists(path):
    os.remove(path)
url = f"sqlite:///{path}"
store = open_store(url, HUB)
for obj in (chain, double):
    store.register_code(*encode_code(obj))
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
actors = FakeActors()
core = HostCore(HUB, url, "process", None, None, {"num_cpus": 0}, None, actors)


def start(iid: str, value: object) -> None:
    record = InstanceRecord(iid, "chain", "", "Pending", f"x-{iid}", 1.0, 1.0, dumps(value))
    store.create_instance(record, [], [encode_event(h.ExecutionStarted("chain", value, ""))])


def scheduled(iid: str) -> int:
    return sum(isinstance(decode_event(b), h.TaskScheduled) for b in store.load_history(iid))


async def run() -> None:
    start("done", BIG)
    await core.activate(["done"])
    while store.load_instance("done").status != "Completed":
        await asyncio.sleep(0.01)
    actors.answer_first = len(actors.ran) + 1  # the next instance's second task never answers
    start("open", 1)
    await core.activate(["open"])
    while scheduled("open") < 2:
        await asyncio.sleep(0.01)


loop.run_until_complete(run())
store.commit_entities([EntityCheckpoint("Counter", "k", b"state", True, "client-1", 3, b"r")])
store.set_meta("spares", "h1")
core.store.close()
store.close()
db = sqlite3.connect(path)  # one self-contained file: the WAL folded in
db.execute("PRAGMA journal_mode=DELETE")
db.close()
