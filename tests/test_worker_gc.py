"""The garbage-collector settings every server worker gets (``app.freeze_startup_heap``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from cds_service.app import FULL_COLLECTION_EVERY, YOUNG_COLLECTION_EVERY


def test_worker_gc_settings_and_cycles_still_collected() -> None:
    # in a child process: the settings are process-wide and must not leak into the test run
    code = textwrap.dedent("""
        import gc, json, weakref
        from cds_service.app import freeze_startup_heap

        class Node:
            pass

        kept = [Node() for _ in range(100)]  # start-up objects: frozen
        freeze_startup_heap()
        a, b = Node(), Node()
        a.other, b.other = b, a  # garbage in a cycle, made after start-up
        watch = weakref.ref(a)
        del a, b
        gc.collect()
        print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                          "cycle_freed": watch() is None}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    found = json.loads(done.stdout)
    assert found["threshold"] == [YOUNG_COLLECTION_EVERY, 10, FULL_COLLECTION_EVERY]
    assert YOUNG_COLLECTION_EVERY > 700 and FULL_COLLECTION_EVERY > 10  # above CPython's
    assert found["frozen"] >= 100
    assert found["cycle_freed"] is True
