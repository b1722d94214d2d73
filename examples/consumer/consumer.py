#!/usr/bin/python3
"""A minimal consumer of the profile service's events (docs/events.md), to copy from.

It reads every partition of the topic from the beginning, and for each record:
  1. validates it: CloudEvents headers, and `data` against the JSON Schema that its
     `ce_dataschema` header names (schemas/events/*.json, matched by their `$id`);
  2. drops duplicates: a `ce_sequence` <= the last one seen for that user (at-least-once
     delivery re-sends an event with the same ce_id and ce_sequence);
  3. detects gaps: a `ce_sequence` above last + 1 means events of that user are missing;
  4. folds the event into the user's state (profile version, watchlist, ratings, resume points).

Invalid records are set aside (reported, not folded); their sequence still counts as seen.
A record of another version of a type it reads (`ce_dataschema` ...:<Type>:<other version>) is
skipped and not counted; a record of a type it does not know counts as seen but is not folded
(docs/events.md, Versioning).
State lives in memory only: a real consumer stores each user's last ce_sequence in the same
transaction as the state it derives, and commits Kafka offsets after that.

  consumer.py --bootstrap HOST:PORT[,...] --topic TOPIC [--schemas DIR] [--exit-at-end]

Gaps, duplicates and invalid records are logged to stderr as they happen. At exit (end of the
topic with --exit-at-end, or SIGINT/SIGTERM) one JSON document goes to stdout:
  {"records", "applied", "duplicates", "otherVersions", "unknownTypes",
   "gaps": [{"userId", "after", "got"}],
   "invalid": [{"userId", "partition", "offset", "problems"}],
   "users": {userId: {"lastSequence", "profileVersion", "watchlist", "ratings",
                      "resumePoints"}}}
Needs python3-confluent-kafka and python3-jsonschema (4.x, draft 2020-12).
"""
import argparse
import json
import signal
import sys
import time
from pathlib import Path

import jsonschema
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

DEFAULT_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "events"


def load_schemas(directory):
    """{$id: validator} of every *.json schema in directory."""
    out = {}
    for path in sorted(Path(directory).glob("*.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator.check_schema(schema)
        out[schema["$id"]] = jsonschema.Draft202012Validator(schema)
    if not out:
        raise SystemExit(f"no schemas in {directory}")
    return out


class UserState:
    def __init__(self):
        self.last_seq = 0
        self.profile_version = None
        self.watchlist = set()
        self.ratings = {}
        self.resume = {}

    def apply(self, etype, data):
        if etype == "ProfileUpdated":
            self.profile_version = data["version"]
        elif etype == "ProfileDeleted":
            # Erasure: forget everything of the user; only the sequence carries on.
            self.profile_version = None
            self.watchlist = set()
            self.ratings = {}
            self.resume = {}
        elif etype == "WatchlistUpdated":
            if data["action"] == "added":
                self.watchlist.add(data["videoId"])
            else:
                self.watchlist.discard(data["videoId"])
        elif etype == "VideoRated":
            self.ratings[data["videoId"]] = {"rating": data["rating"], "review": data["review"]}
        elif etype == "HistoryUpdated":
            # The resume point of a video is its entry with the latest watchedAt (fixed-width
            # UTC text, so it sorts as a string). An entry may carry an older watchedAt than
            # one already seen; then it changes nothing. On equal times the later event wins.
            cur = self.resume.get(data["videoId"])
            if cur is None or data["watchedAt"] >= cur["watchedAt"]:
                self.resume[data["videoId"]] = {k: data[k] for k in
                                                ("positionSeconds", "durationSeconds",
                                                 "watchedAt")}

    def to_json(self):
        return {"lastSequence": self.last_seq, "profileVersion": self.profile_version,
                "watchlist": sorted(self.watchlist), "ratings": self.ratings,
                "resumePoints": self.resume}


class Folder:
    """Per-user dedup, gap detection and state."""

    def __init__(self, schemas):
        self.schemas = schemas
        self.types = {schema_type(uri) for uri in schemas}
        self.users = {}
        self.records = self.applied = self.duplicates = 0
        self.other_versions = self.unknown_types = 0
        self.gaps = []
        self.invalid = []

    def validate(self, headers, key, value):
        """(data, []) or (None, problems), for a record whose ce_dataschema is one of ours."""
        problems = []
        uri = headers["ce_dataschema"]
        if headers.get("ce_specversion") != "1.0":
            problems.append(f"ce_specversion {headers.get('ce_specversion')!r}")
        if schema_type(uri) != headers.get("ce_type"):
            problems.append(f"ce_dataschema {uri!r} is not a schema of ce_type "
                            f"{headers.get('ce_type')!r}")
        if headers.get("ce_subject") != key:
            problems.append("ce_subject differs from the key")
        try:
            data = json.loads(value)
        except (TypeError, ValueError):
            return None, problems + ["value is not JSON"]
        problems += [f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
                     for e in self.schemas[uri].iter_errors(data)]
        if isinstance(data, dict) and data.get("userId") != key:
            problems.append("data.userId differs from the key")
        return (data, []) if not problems else (None, problems)

    def reject(self, msg, key, seq, problems):
        self.invalid.append({"userId": key, "partition": msg.partition(), "offset": msg.offset(),
                             "problems": problems})
        log("invalid", key, seq, "; ".join(problems))

    def handle(self, msg):
        self.records += 1
        key = msg.key().decode() if msg.key() is not None else None
        headers = {k: (v.decode() if v is not None else None) for k, v in (msg.headers() or [])}
        try:
            seq = int(headers.get("ce_sequence"))
        except (TypeError, ValueError):
            seq = None
        if key is None or seq is None or seq < 1:
            self.reject(msg, key, seq, ["no key or no valid ce_sequence"])
            return
        uri = headers.get("ce_dataschema")
        etype = schema_type(uri)
        data, problems = None, []
        if uri in self.schemas:
            data, problems = self.validate(headers, key, msg.value())
            if problems:
                self.reject(msg, key, seq, problems)  # set aside; its sequence counts as seen
        elif etype in self.types:
            # Another version of a type we read: while a type moves to a new version both are
            # published, with the same ce_id and ce_sequence. Skip it without counting it as
            # seen; our version's copy follows. (Once only the new one is published, skipping
            # it shows up as gaps: time to upgrade.)
            self.other_versions += 1
            return
        elif etype is not None:
            self.unknown_types += 1  # a type newer than this consumer: seen, not applied
            log("unknown-type", key, seq, f"{uri} skipped")
        else:
            self.reject(msg, key, seq, [f"ce_dataschema {uri!r} is not a profile-service schema"])
        user = self.users.setdefault(key, UserState())
        if seq <= user.last_seq:
            self.duplicates += 1  # at-least-once: a re-send of an event already applied
            log("duplicate", key, seq, f"(last {user.last_seq}) dropped")
            return
        if seq != user.last_seq + 1:
            self.gaps.append({"userId": key, "after": user.last_seq, "got": seq})
            log("gap", key, seq, f"after {user.last_seq}: {seq - user.last_seq - 1} missing")
        user.last_seq = seq
        if data is not None and not problems:
            user.apply(etype, data)
            self.applied += 1

    def to_json(self):
        return {"records": self.records, "applied": self.applied,
                "duplicates": self.duplicates, "otherVersions": self.other_versions,
                "unknownTypes": self.unknown_types, "gaps": self.gaps, "invalid": self.invalid,
                "users": {u: s.to_json() for u, s in sorted(self.users.items())}}


def schema_type(uri):
    """<Type> of urn:profile-service:schema:<Type>:<version>, else None."""
    parts = (uri or "").split(":")
    if len(parts) != 5 or parts[:3] != ["urn", "profile-service", "schema"] or \
            not parts[3] or not parts[4].isdigit():
        return None
    return parts[3]


def log(what, user, seq, detail):
    print(json.dumps({"event": what, "userId": user, "ce_sequence": seq, "detail": detail}),
          file=sys.stderr, flush=True)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    ap.add_argument("--topic", default="profile.events")
    ap.add_argument("--schemas", default=str(DEFAULT_SCHEMAS), help="directory of *.json schemas")
    ap.add_argument("--exit-at-end", action="store_true",
                    help="exit once every partition has been read to its end")
    ap.add_argument("--timeout", type=float, default=120,
                    help="with --exit-at-end: give up (exit 1) after this many seconds")
    args = ap.parse_args(argv)

    folder = Folder(load_schemas(args.schemas))
    consumer = Consumer({"bootstrap.servers": args.bootstrap,
                         "group.id": "profile-events-example",  # assign() below: no group join
                         "enable.auto.commit": False, "enable.partition.eof": True})
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    rc = 0
    try:
        md = consumer.list_topics(args.topic, timeout=10).topics.get(args.topic)
        if md is None or md.error is not None or not md.partitions:
            raise SystemExit(f"topic {args.topic}: {md and md.error}")
        parts = sorted(md.partitions)
        consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in parts])
        at_end = set()
        deadline = time.monotonic() + args.timeout
        while not stop:
            if args.exit_at_end and at_end == set(parts):
                break
            if args.exit_at_end and time.monotonic() > deadline:
                log("timeout", None, None, f"partitions at end: {sorted(at_end)} of {parts}")
                rc = 1
                break
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise SystemExit(f"kafka: {err}")
                at_end.discard(msg.partition())
                folder.handle(msg)
    finally:
        consumer.close()
    json.dump(folder.to_json(), sys.stdout, indent=1, sort_keys=True)
    print()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
