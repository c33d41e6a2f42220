#!/usr/bin/env python3
"""Cuts the committed example data out of the shared nycflights13 data set (CC0).

Writes data/flights/<arrival day>.jsonl.gz: the flights that *arrive* (depart, or for cancelled
flights, are due) on that day, in arrival order, so that a file source reading one file per
micro-batch sees the data set's real lateness. Run from the repository root:

    python3 scripts/slice_flights.py ../shared/data/nycflights13/flights.jsonl.gz 2013-01
"""
import gzip
import json
import os
import sys


def main(src: str, month: str) -> None:
    out_dir = os.path.join("data", "flights")
    os.makedirs(out_dir, exist_ok=True)
    days: dict[str, list[str]] = {}
    with gzip.open(src, "rt") as f:
        for line in f:
            row = json.loads(line)
            arrival = row["dep_ts"] or row["sched_dep_ts"]
            if arrival.startswith(month):
                days.setdefault(arrival[:10], []).append(line)
    for day, lines in sorted(days.items()):
        # mtime=0 keeps the gzip bytes reproducible.
        with open(os.path.join(out_dir, f"{day}.jsonl.gz"), "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                gz.write("".join(lines).encode())
        print(day, len(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
