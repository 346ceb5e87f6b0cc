#!/usr/bin/env python3
"""Reads every record of every Waybill topic on a Kafka broker the way any Kafka user
would: confluent-kafka's Consumer, and its Schema Registry client and AvroDeserializer
pointed at Waybill's registry API (`registry.listen`), subjects by record name.

Prints one JSON object: per topic, the records read, how many decoded, the decoded
records by schema name, and the failures (count and a few reasons). It judges nothing;
tests/registry.rs compares the numbers with what the demo says it wrote.

    registry-check.py --bootstrap 127.0.0.1:19092 --registry http://127.0.0.1:8422
"""

import argparse
import collections
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient, record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    ap.add_argument("--registry", required=True, help="Waybill's schema registry URL")
    ap.add_argument("--prefix", default="waybill.", help="topics to read (name prefix)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to read one partition")
    args = ap.parse_args()

    registry = SchemaRegistryClient({"url": args.registry})
    deserializer = AvroDeserializer(registry, conf={"subject.name.strategy": record_subject_name_strategy})
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "waybill-registry-check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    topics = sorted(t for t in consumer.list_topics(timeout=30).topics if t.startswith(args.prefix))
    report = {}
    for topic in topics:
        stats = {"records": 0, "decoded": 0, "failed": 0, "by_schema": collections.Counter(), "failures": []}
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        for p in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            next_offset = low
            idle = 0.0
            while next_offset < high:
                msg = consumer.poll(1.0)
                if msg is None:
                    idle += 1.0
                    if idle > args.timeout:
                        print(f"{topic}[{p}]: no record after offset {next_offset} within {args.timeout} s "
                              f"(high watermark {high})", file=sys.stderr)
                        return 2
                    continue
                if msg.error():
                    print(f"{topic}[{p}]: {msg.error()}", file=sys.stderr)
                    return 2
                idle = 0.0
                next_offset = msg.offset() + 1
                stats["records"] += 1
                try:
                    value = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
                except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                    stats["failed"] += 1
                    if len(stats["failures"]) < 5:
                        stats["failures"].append(f"offset {p}/{msg.offset()}: {type(e).__name__}: {e}")
                    continue
                if not isinstance(value, dict) or not value:
                    stats["failed"] += 1
                    stats["failures"].append(f"offset {p}/{msg.offset()}: decoded to {value!r}")
                    continue
                stats["decoded"] += 1
                schema_id = int.from_bytes(msg.value()[1:5], "big")
                stats["by_schema"][schema_name(registry, schema_id)] += 1
            consumer.unassign()
        stats["by_schema"] = dict(stats["by_schema"])
        report[topic] = stats
    consumer.close()
    print(json.dumps(report, indent=1, sort_keys=True))
    return 0


_names = {}


def schema_name(registry: SchemaRegistryClient, schema_id: int) -> str:
    if schema_id not in _names:
        schema = json.loads(registry.get_schema(schema_id).schema_str)
        _names[schema_id] = f"{schema.get('namespace', '')}.{schema['name']}"
    return _names[schema_id]


if __name__ == "__main__":
    sys.exit(main())
