#!/usr/bin/python3
"""Reproduces a kafka-mock (librdkafka 2.0.2 rdkafka_mock) artefact found by the fault suite:
with an idempotent producer and more than one request in flight, an injected retriable Produce
error on one request loses messages that the producer reports as delivered.

The mock acks as a duplicate, without writing it, a batch whose base sequence falls within
its window of the last 5 requests (rdkafka_mock.c), so a failed batch retried after later
pipelined ones can be acked but never stored; a real broker answers
OUT_OF_ORDER_SEQUENCE_NUMBER. With max.in.flight.requests.per.connection=1 nothing is lost.

    /usr/bin/python3 tests/faults/repro_mock_inflight.py build/bin/kafka-mock [IN_FLIGHT]

Prints how many delivery-acknowledged messages are missing from the log; exits 1 if any.
"""

import os
import subprocess
import sys
import tempfile
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

CODES = ["REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS", "LEADER_NOT_AVAILABLE",
         "NOT_LEADER_FOR_PARTITION", "NOT_ENOUGH_REPLICAS_AFTER_APPEND"]


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    in_flight = argv[2] if len(argv) > 2 else "5"
    tmp = tempfile.mkdtemp(prefix="mock-inflight-")
    fifo = os.path.join(tmp, "ctl")
    mock = subprocess.Popen([argv[1], "--brokers", "3", "--topic", "t", "--partitions", "2",
                             "--control", fifo], stdout=subprocess.PIPE,
                            stderr=open(os.path.join(tmp, "mock.log"), "w"))
    try:
        boot = mock.stdout.readline().decode().strip()

        def ctl(line):
            fd = os.open(fifo, os.O_WRONLY)
            os.write(fd, (line + "\n").encode())
            os.close(fd)

        acked, failed = set(), set()

        def dr(err, msg):
            (failed if err else acked).add(int(msg.value()))

        p = Producer({"bootstrap.servers": boot, "enable.idempotence": True,
                      "enable.gapless.guarantee": True, "acks": "all", "linger.ms": 2,
                      "message.timeout.ms": 60000, "log_level": 2,
                      "max.in.flight.requests.per.connection": int(in_flight)})
        n, t0, injected = 0, time.time(), 0
        while time.time() - t0 < 8:
            for _ in range(5):
                p.produce("t", key=b"k%d" % (n % 7), value=b"%d" % n, on_delivery=dr)
                n += 1
            p.poll(0.02)
            if time.time() - t0 > injected * 1.2 + 1 and injected < 5:
                ctl("err 16 " + " ".join((CODES * 4)[:16]))
                injected += 1
        p.flush(60)
        c = Consumer({"bootstrap.servers": boot, "group.id": "repro", "log_level": 2})
        c.assign([TopicPartition("t", i, OFFSET_BEGINNING) for i in range(2)])
        seen, idle = set(), time.time()
        while time.time() - idle < 3:
            for m in c.consume(1000, 0.5):
                if not m.error():
                    seen.add(int(m.value()))
                    idle = time.time()
        c.close()
        missing = sorted(acked - seen)
        print("in-flight=%s produced=%d delivered=%d failed=%d delivered-but-missing=%d %s" % (
            in_flight, n, len(acked), len(failed), len(missing), missing[:10]))
        return 1 if missing else 0
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
