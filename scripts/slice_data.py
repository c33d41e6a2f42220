#!/usr/bin/env python3
"""Cuts the committed example data (data/) out of the shared data sets. Standard library only.

Run from anywhere; the repository root is found from this file's location:

    python3 scripts/slice_data.py [--src ../shared/data]

and writes, replacing what is there:

- data/flights/<day>.jsonl.gz: the January 2013 nycflights13 flights that *arrive* in the stream
  on that UTC day: a flight arrives when it actually departs (`dep_ts`; cancelled flights at their
  scheduled `sched_dep_ts`), in arrival order, so a file source reading one file per micro-batch
  sees the data set's real lateness.
- data/weather/<day>.jsonl.gz: the nycflights13 weather observations whose `time_hour` falls on
  that UTC day, ordered by (`time_hour`, `origin`); exactly one file per flights file, same name.
- data/airlines/airlines.json: the nycflights13 airlines, plain newline-delimited JSON.
- data/earthquakes/<NNN>.jsonl.gz: a simulated hourly poll of the USGS "past 2 hours" feed:
  poll k (at T0 + k h) holds the events with `time` in [T0 + (k-2) h, T0 + k h), ordered by
  `time`, so that most events are delivered twice.

Gzip headers use mtime=0 so the bytes are reproducible. File modification times are set to the
time the file "arrives" (end of the day; poll time), in the same order as the names, because the
file source orders new files by mtime, then name.
"""
import argparse
import calendar
import gzip
import json
import os
import shutil
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONTH = "2013-01"

# Earthquakes: T0 is the time of poll 0. The data set starts at 2018-01-31T01:49:59Z, so poll 0's
# window [T0 - 2 h, T0) is the first whole two hours.
QUAKE_T0 = "2018-01-31T04:00:00Z"
QUAKE_POLLS = 72
QUAKE_WINDOW_H = 2
QUAKE_FIELDS = ["id", "time", "updated", "mag", "mag_type", "place", "lon", "lat", "depth_km",
                "net", "status", "type", "sig", "tsunami"]


def epoch(ts: str) -> float:
    """Seconds since the epoch of an ISO-8601 UTC timestamp with a trailing Z."""
    whole, _, frac = ts.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return secs + (float("0." + frac) if frac else 0.0)


def iso(secs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def read_lines(path: str) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return list(f)


def reset_dir(name: str) -> str:
    out_dir = os.path.join(ROOT, "data", name)
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    return out_dir


def write_gz(path: str, lines: list[str], mtime: float) -> None:
    # mtime=0 keeps the gzip bytes reproducible; the header also records the base name.
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write("".join(lines).encode())
    os.utime(path, (mtime, mtime))


def end_of_day(day: str) -> float:
    return epoch(day + "T23:59:59Z")


def flights(src: str) -> list[str]:
    out_dir = reset_dir("flights")
    days: dict[str, list[str]] = {}
    for line in read_lines(os.path.join(src, "nycflights13", "flights.jsonl.gz")):
        row = json.loads(line)
        arrival = row["dep_ts"] or row["sched_dep_ts"]
        if arrival.startswith(MONTH):
            days.setdefault(arrival[:10], []).append(line)
    for day, lines in sorted(days.items()):
        write_gz(os.path.join(out_dir, f"{day}.jsonl.gz"), lines, end_of_day(day))
        print("flights", day, len(lines))
    return sorted(days)


def weather(src: str, days: list[str]) -> None:
    out_dir = reset_dir("weather")
    by_day: dict[str, list[tuple[str, str, str]]] = {day: [] for day in days}
    for line in read_lines(os.path.join(src, "nycflights13", "weather.jsonl.gz")):
        row = json.loads(line)
        day = row["time_hour"][:10]
        if day in by_day:
            by_day[day].append((row["time_hour"], row["origin"], line))
    for day in days:
        rows = sorted(by_day[day])
        write_gz(os.path.join(out_dir, f"{day}.jsonl.gz"), [r[2] for r in rows], end_of_day(day))
        print("weather", day, len(rows))


def airlines(src: str) -> None:
    out_dir = reset_dir("airlines")
    lines = read_lines(os.path.join(src, "nycflights13", "airlines.jsonl.gz"))
    with open(os.path.join(out_dir, "airlines.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    print("airlines", len(lines))


def earthquakes(src: str) -> None:
    out_dir = reset_dir("earthquakes")
    events = []
    for line in read_lines(os.path.join(src, "usgs_earthquakes", "earthquakes.jsonl.gz")):
        row = json.loads(line)
        events.append((epoch(row["time"]), row["id"], {k: row[k] for k in QUAKE_FIELDS}))
    events.sort(key=lambda e: (e[0], e[1]))
    t0 = epoch(QUAKE_T0)
    for k in range(QUAKE_POLLS):
        poll = t0 + k * 3600
        start = poll - QUAKE_WINDOW_H * 3600
        lines = [json.dumps(e[2], ensure_ascii=False, separators=(",", ":")) + "\n"
                 for e in events if start <= e[0] < poll]
        write_gz(os.path.join(out_dir, f"{k:03d}.jsonl.gz"), lines, poll)
        print("earthquakes", f"{k:03d}", iso(poll), len(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", default=os.path.join(ROOT, "..", "shared", "data"),
                        help="the shared data directory (default: ../shared/data)")
    src = parser.parse_args().src
    days = flights(src)
    weather(src, days)
    airlines(src)
    earthquakes(src)


if __name__ == "__main__":
    main()
