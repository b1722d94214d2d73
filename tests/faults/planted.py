"""The planted fault: proof that the checker catches a lost event.

With both relays stopped, a few writes of one fresh user are acknowledged by the API; then one
of that user's pending outbox rows (seq 2) is deleted behind the relays' back, as a buggy relay
or an operator's mistake would. The relays are started again and the run drains. The checker
must now fail, reporting the acknowledged write without its event (lost >= 1) and the hole in
the user's ce_sequence (gaps >= 1). run.py asserts exactly that.
"""

from common import log, pg_query

PLANTED_WRITES = [
    ("wl_add", "POST", "/watchlist", {"videoId": "planted-1"}),
    ("history_add", "POST", "/history", {"videoId": "planted-2", "positionSeconds": 42,
                                         "durationSeconds": 100,
                                         "watchedAt": "2026-01-02T03:04:05.678Z"}),
    ("rating", "POST", "/ratings", {"videoId": "planted-3", "rating": 3, "review": "planted"}),
    ("wl_add", "POST", "/watchlist", {"videoId": "planted-4"}),
]
VICTIM_SEQ = 2


def plant(workload, services, database_url, user):
    """Runs the planted writes for `user` (already in workload.tokens) and deletes the outbox
    row of the second one. Returns the op records. Raises when the plant itself fails."""
    for p in services.relays:
        st = p.stop()
        log("planted: %s stopped (exit %s)" % (p.name, st))
    client = workload.clients[0]
    client.model.setdefault(user, {})
    client.op_idx.setdefault(user, 0)
    ops = []
    for op, method, suffix, body in PLANTED_WRITES:
        rec = client.do_write(user, op, method, "/profiles/%s%s" % (user, suffix), dict(body))
        if rec["outcome"] != "acked":
            raise RuntimeError("planted write %s not acknowledged: %s" % (op, rec))
        ops.append(rec)
    rows = pg_query(database_url,
                    "DELETE FROM outbox WHERE user_id = %s AND seq = %s AND published_at IS NULL "
                    "RETURNING event_id::text, event_type",
                    (user, VICTIM_SEQ))
    if len(rows) != 1:
        raise RuntimeError("planted: expected to delete 1 pending outbox row, deleted %d" % len(rows))
    log("planted: deleted outbox row %s seq %d (%s) of %s behind the relays' back"
        % (rows[0][0], VICTIM_SEQ, rows[0][1], user))
    for p in services.relays:
        p.start(new_port=True)
    return ops
