//! Every SQL example runs as a user runs it (`sluice run FILE --trigger available-now`) on the
//! committed data, with its console sink swapped for a JSON file sink whose rows are checked.

use std::process::Command;

use crate::cli::{copied_inputs, example_script};
use crate::common::sink_rows_by_batch;

/// Runs `sql/examples/<name>.sql` with its inputs copied in name order (a clone gives no mtime
/// order) and its console sink written to JSON files in the same output mode; returns every
/// output row and stderr.
fn run_example(name: &str, inputs: &[&str]) -> (Vec<serde_json::Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sql = example_script(name, &copied_inputs(dir.path(), inputs), &out);
    let script = dir.path().join("q.sql");
    std::fs::write(&script, sql).unwrap();
    let checkpoint = dir.path().join("cp");
    let run = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", script.to_str().unwrap(), "--trigger", "available-now", "--checkpoint"])
        .arg(&checkpoint)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "{name}: {stderr}");
    (sink_rows_by_batch(&out).into_values().flatten().collect(), stderr)
}

fn flights_read(stderr: &str) -> u64 {
    stderr.lines().filter_map(|l| l.split(" | input ").nth(1)?.split(' ').next()?.parse::<u64>().ok()).sum()
}

#[test]
fn flights_weather_gives_every_flight_once_with_its_hours_weather_or_nulls() {
    let (rows, stderr) = run_example("flights_weather", &["flights", "weather"]);
    // Each flight once (weather has one row per origin and hour); none is late in January. Three
    // flights of Jan 31 are scheduled in the hour 2013-02-01T00:00, which the watermark never
    // passes: unmatched, they wait in state for weather that is not in the slice.
    assert_eq!(rows.len(), 26_817, "{stderr}");
    let mut ids: Vec<&str> = rows.iter().map(|r| r["flight_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 26_817);
    // The hours without an observation (EWR and JFK at 17:00 on Jan 1, LGA at 11:00 on Jan 6)
    // give 52 flights padded with nulls; every other flight has its hour's weather.
    let unmatched: Vec<_> = rows.iter().filter(|r| r.get("temp").is_none()).collect();
    assert_eq!(unmatched.len(), 22 + 17 + 13);
    let hours = ["2013-01-01T17:00:00.000Z", "2013-01-06T11:00:00.000Z"];
    assert!(unmatched.iter().all(|r| hours.contains(&r["time_hour"].as_str().unwrap())), "{unmatched:?}");
    assert!(stderr.contains("join[0]: "), "{stderr}");
    assert_eq!(flights_read(&stderr), 26_820 + 2_211);
}

#[test]
fn flights_airlines_names_every_carrier_per_day() {
    let (rows, _) = run_example("flights_airlines", &["flights"]);
    assert!(rows.iter().all(|r| r["airline"].as_str().is_some_and(|a| a.contains(' '))));
    // Every day the watermark passed: Jan 1-30 (the last day stays open).
    let mut days: Vec<&str> = rows.iter().map(|r| r["day"].as_str().unwrap()).collect();
    days.dedup();
    assert_eq!(days.len(), 30);
    let flights: u64 = rows.iter().map(|r| r["flights"].as_u64().unwrap()).sum();
    assert!(flights > 25_000, "{flights}");
}

#[test]
fn earthquakes_dedup_emits_each_event_exactly_once() {
    let (rows, _) = run_example("earthquakes_dedup", &["earthquakes"]);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((rows.len(), ids.len()), (703, 703), "703 distinct events in 1,383 deliveries");
}

#[test]
fn earthquakes_strongest_keeps_each_types_top_3_up_to_date() {
    let (rows, _) = run_example("earthquakes_strongest", &["earthquakes"]);
    // Update mode: later rows replace earlier ones of the same type and rank.
    let mut ranking = std::collections::BTreeMap::new();
    for r in &rows {
        ranking.insert((r["type"].as_str().unwrap(), r["rank"].as_u64().unwrap()), r["id"].as_str().unwrap());
    }
    // The top 3 by magnitude (then time) of the 703 distinct events, computed apart from sluice.
    let expected = [
        ("earthquake", ["us2000crmu", "us1000cdn0", "us1000ce9r"]),
        ("explosion", ["uw61367031", "uw61366506", "nn00620389"]),
        ("quarry blast", ["mb80279884", "ci38096248", "nc72962016"]),
    ];
    let expected: std::collections::BTreeMap<(&str, u64), &str> = expected
        .iter()
        .flat_map(|(t, ids)| ids.iter().enumerate().map(move |(i, id)| ((*t, i as u64 + 1), *id)))
        .collect();
    assert_eq!(ranking, expected);
    // Rows are emitted only when a ranking changes: fewer rows than events.
    assert!(rows.len() < 200, "{}", rows.len());
}

#[test]
fn tailnum_sessions_group_an_aircrafts_departures() {
    let (rows, _) = run_example("tailnum_sessions", &["flights"]);
    assert!(rows.iter().any(|r| r["departures"].as_u64().unwrap() > 1));
    for r in &rows {
        let legs = r["destinations"].as_str().unwrap().split(' ').count() as u64;
        assert_eq!(legs, r["departures"].as_u64().unwrap(), "{r}");
        assert!(r["first_departure"].as_str() < r["session_end"].as_str());
    }
}
