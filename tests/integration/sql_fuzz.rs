//! Property test of the SQL front end: scripts from a small grammar of streaming DDL and queries
//! (right and wrong column types, watermarks, options, window sizes, output modes, joins,
//! deduplication, subqueries), and token-level mutations of them (dropped, duplicated, inserted
//! tokens, truncation), are parsed, planned, started on a temporary checkpoint and run for two
//! batches over a three-row input. Each must end in an error or in batches that ran: never a
//! panic, never a hang.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use sluice::StreamContext;

/// Time one case may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);

const TYPES: &[&str] = &[
    "STRING",
    "TIMESTAMP",
    "BIGINT",
    "INT",
    "DOUBLE",
    "BOOLEAN",
    "DATE",
    "DECIMAL(10, 2)",
    "TIMESTAMP(3)",
    "VARCHAR",
    "ARRAY<INT>",
    "STRUCT<a INT>",
    "BLOB",
    "INTERVAL",
];

const DURATIONS: &[&str] = &[
    "'10 seconds'",
    "'1 hour'",
    "'5 seconds'",
    "'0 seconds'",
    "'-5 seconds'",
    "'1 month'",
    "'banana'",
    "'500 milliseconds'",
    "'1 nanosecond'",
    "INTERVAL '10' SECOND",
    "INTERVAL 10 SECONDS",
    "INTERVAL '1' HOUR",
    "INTERVAL '1' MONTH",
    "INTERVAL '0' SECOND",
    "INTERVAL '-3' SECOND",
    "10",
    "NULL",
    "ts",
    "k",
];

const WATERMARKS: &[&str] = &[
    "{c} - INTERVAL '10' SECOND",
    "{c}",
    "{c} - INTERVAL 10 SECONDS",
    "{c} - INTERVAL '1' MONTH",
    "{c} + INTERVAL '5' SECOND",
    "{c} - INTERVAL '-5' SECOND",
    "{c} - 5",
    "now()",
];

const WATERMARK_COLUMNS: &[&str] = &["ts", "ts", "k", "v", "nope"];

const SOURCE_OPTIONS: &[&str] = &[
    "",
    "",
    ", max_files_per_trigger = '1'",
    ", max_files_per_trigger = '0'",
    ", bad_data = 'drop'",
    ", header = 'maybe'",
    ", format = 'csv'",
    ", format = 'parquet'",
    ", format = 'avro'",
    ", bogus = '1'",
];

const SINKS: &[&str] = &[
    "connector = 'file', path = '{dir}/out', format = 'json'",
    "connector = 'file', path = '{dir}/out', format = 'csv'",
    "connector = 'file', path = '{dir}/out', format = 'parquet'",
    "connector = 'file', format = 'json'",
    "connector = 'kafka'",
];

const MODES: &[&str] = &[
    "",
    ", output_mode = 'append'",
    ", output_mode = 'update'",
    ", output_mode = 'complete'",
    ", output_mode = 'sometimes'",
];

const JOINS: &[&str] =
    &["JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN", "LEFT SEMI JOIN", "LEFT ANTI JOIN", "CROSS JOIN"];

const JOIN_CONDITIONS: &[&str] =
    &["", " AND b.ts BETWEEN a.ts AND a.ts + {a}", " AND b.ts >= a.ts", " AND a.ts = b.ts", " AND b.ts > a.ts - {a}"];

const QUERIES: &[&str] = &[
    "SELECT k, ts, v FROM events WHERE v > 1",
    "SELECT window.start AS ws, window.end AS we, k, count(*) AS n, sum(v) AS s FROM events GROUP BY window(ts, {a}), k",
    "SELECT window.start AS ws, k, count(*) AS n FROM events GROUP BY window(ts, {a}, {b}), k",
    "SELECT window.start AS ws, count(*) AS n FROM events GROUP BY window(ts, {a}, {b}, {a})",
    "SELECT k, session_window.start AS s, session_window.end AS e, count(*) AS n FROM events GROUP BY k, session_window(ts, {a})",
    "SELECT k, window(ts, {a}) AS w FROM events",
    "SELECT DISTINCT k FROM events",
    "SELECT DISTINCT k, ts FROM events",
    "SELECT k, count(*) AS n, approx_distinct(v) AS d FROM events GROUP BY k",
    "SELECT a.k, a.ts, b.v FROM events a {join} other b ON a.k = b.k{cond}",
    "SELECT k, ts, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts) AS rn FROM events) WHERE rn = 1",
    "SELECT k, ts FROM (SELECT k, ts, ROW_NUMBER() OVER (PARTITION BY k, ts ORDER BY ts) AS rn FROM events) t WHERE rn = 1",
    "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC NULLS LAST, ts) AS rn FROM events) WHERE rn <= 3",
    "SELECT k, v FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts DESC) AS rn FROM events) WHERE rn = 1",
    "SELECT k FROM events WHERE k IN (SELECT k FROM other)",
    "SELECT k FROM events e WHERE EXISTS (SELECT 1 FROM other o WHERE o.k = e.k)",
    "SELECT k, (SELECT max(v) FROM other) AS m FROM events",
    "SELECT k, count(*) AS n FROM events GROUP BY k ORDER BY k LIMIT 3",
    "SELECT window.start AS ws, count(*) AS n FROM (SELECT window AS w, count(*) AS c FROM events GROUP BY window(ts, {a})) GROUP BY window(window_time(w), {b})",
    "SELECT k, v / 0 AS x, CAST(k AS INT) AS y, if(v > 1, 'a', 'b') AS z, date_add(CAST(ts AS DATE), v) AS d FROM events",
    "SELECT k, collect_list(v) AS l FROM events GROUP BY k",
    "SELECT k, sum(v) OVER (PARTITION BY k) AS s FROM events",
    "SELECT * FROM events UNION ALL SELECT * FROM other",
    "SELECT k, ts, v FROM events, other",
];

/// A column declaration: mostly the type the input holds, sometimes any type.
fn column(name: &'static str, right: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(right), 1 => proptest::sample::select(TYPES)].prop_map(move |t| format!("{name} {t}"))
}

fn table(name: &'static str) -> impl Strategy<Value = String> {
    let watermark = proptest::option::weighted(
        0.8,
        (proptest::sample::select(WATERMARK_COLUMNS), proptest::sample::select(WATERMARKS)),
    );
    (column("k", "STRING"), column("ts", "TIMESTAMP"), column("v", "BIGINT"), watermark, proptest::sample::select(SOURCE_OPTIONS))
        .prop_map(move |(k, ts, v, watermark, options)| {
            let watermark = watermark
                .map(|(c, expr)| format!(", WATERMARK FOR {c} AS {}", expr.replace("{c}", c)))
                .unwrap_or_default();
            format!(
                "CREATE TABLE {name} ({k}, {ts}, {v}{watermark})\n  WITH (connector = 'file', path = '{{dir}}/{name}'{options});"
            )
        })
}

/// A query of [`QUERIES`] with window sizes from `durations`.
fn query(durations: &'static [&'static str]) -> impl Strategy<Value = String> {
    let pick = |list: &'static [&'static str]| proptest::sample::select(list);
    (pick(QUERIES), pick(durations), pick(durations), pick(JOINS), pick(JOIN_CONDITIONS)).prop_map(
        |(query, a, b, join, cond)| {
            query.replace("{join}", join).replace("{cond}", cond).replace("{a}", a).replace("{b}", b)
        },
    )
}

/// A whole script: two stream tables, a sink, a continuous query.
fn random_script() -> impl Strategy<Value = String> {
    (
        table("events"),
        table("other"),
        proptest::sample::select(SINKS),
        proptest::sample::select(MODES),
        query(DURATIONS),
    )
        .prop_map(|(events, other, sink, mode, query)| {
            format!("{events}\n{other}\nCREATE TABLE out WITH ({sink}{mode});\nINSERT INTO out\n{query};\n")
        })
}

/// A script whose tables, sink and window sizes are all valid, so that only the query and the
/// output mode decide whether it runs: each piece of [`random_script`] is wrong often enough that
/// nearly every one of its scripts is refused at the first statement.
fn valid_script() -> impl Strategy<Value = String> {
    let table = |name: &str| {
        format!(
            "CREATE TABLE {name} (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)\n  \
             WITH (connector = 'file', path = '{{dir}}/{name}');"
        )
    };
    let (events, other) = (table("events"), table("other"));
    const VALID_DURATIONS: &[&str] = &["'10 seconds'", "'1 hour'", "INTERVAL '10' SECOND", "INTERVAL 5 SECONDS"];
    const VALID_MODES: &[&str] = &["", ", output_mode = 'update'", ", output_mode = 'complete'"];
    (proptest::sample::select(VALID_MODES), query(VALID_DURATIONS)).prop_map(move |(mode, query)| {
            format!("{events}\n{other}\nCREATE TABLE out WITH (connector = 'file', path = '{{dir}}/out', format = 'json'{mode});\nINSERT INTO out\n{query};\n")
        })
}

/// Half valid scripts, half random ones.
fn script() -> impl Strategy<Value = String> {
    prop_oneof![valid_script(), random_script()]
}

const INSERTED: &[&str] = &[
    "(",
    ")",
    ",",
    ";",
    "'",
    "\"",
    "SELECT",
    "WINDOW",
    "INTERVAL",
    "GROUP BY",
    "--",
    "/*",
    "WATERMARK",
    "NULL",
    "-",
    "*",
];

#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Insert(usize, &'static str),
    Truncate(usize),
}

/// Splits `sql` into words and punctuation, quoted strings kept whole.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        let mut token = c.to_string();
        if c == '\'' {
            for d in chars.by_ref() {
                token.push(d);
                if d == '\'' {
                    break;
                }
            }
        } else if c.is_alphanumeric() || c == '_' || c == '{' {
            while let Some(&d) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_' || d == '{' || d == '}') {
                    break;
                }
                token.push(d);
                chars.next();
            }
        }
        out.push(token);
    }
    out
}

fn mutated() -> impl Strategy<Value = String> {
    let mutation = prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), proptest::sample::select(INSERTED)).prop_map(|(i, t)| Mutation::Insert(i, t)),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    (script(), proptest::collection::vec(mutation, 1..4)).prop_map(|(script, mutations)| {
        let mut tokens = tokens(&script);
        for m in mutations {
            let n = tokens.len().max(1);
            match m {
                Mutation::Drop(i) if !tokens.is_empty() => {
                    tokens.remove(i % n);
                }
                Mutation::Duplicate(i) if !tokens.is_empty() => {
                    let t = tokens[i % n].clone();
                    tokens.insert(i % n, t);
                }
                Mutation::Insert(i, t) => tokens.insert(i % (tokens.len() + 1), t.to_string()),
                Mutation::Truncate(i) => tokens.truncate(i % n),
                _ => {}
            }
        }
        tokens.join(" ")
    })
}

const ROWS: &str = "{\"k\": \"a\", \"ts\": \"2024-01-01T00:00:01Z\", \"v\": 1}\n\
                    {\"k\": \"b\", \"ts\": \"2024-01-01T00:00:12Z\", \"v\": 2}\n\
                    {\"k\": \"a\", \"ts\": \"2024-01-01T00:00:40Z\", \"v\": 3}\n";

/// How the cases ended, with a few of the errors.
#[derive(Default)]
struct Outcomes {
    started: AtomicUsize,
    refused: AtomicUsize,
    samples: std::sync::Mutex<Vec<String>>,
}

/// Executes, starts and runs two batches of every query of `script` (with `{dir}` a fresh
/// directory holding the input) on a thread of its own: `Ok(Ok(()))` when a query ran,
/// `Ok(Err(error))` for an error, `Err` for a panic or a hang.
fn attempt(script: &str) -> Result<Result<(), String>, String> {
    let dir = tempfile::tempdir().unwrap();
    for table in ["events", "other"] {
        crate::common::write_file(&dir.path().join(table), "0.json", ROWS, 0);
    }
    let sql = script.replace("{dir}", &dir.path().display().to_string());
    let checkpoint = dir.path().join("checkpoint").display().to_string();
    let (send, receive) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let result: sluice::Result<()> = runtime.block_on(async {
            let mut ctx = StreamContext::new();
            let definitions = ctx.execute(&sql).await?;
            if definitions.is_empty() {
                return Err(sluice::SluiceError::sql("no query"));
            }
            for (i, definition) in definitions.iter().enumerate() {
                let query = ctx.start(definition, &format!("{checkpoint}/{i}")).await?;
                query.run_next_batch().await?;
                query.run_next_batch().await?;
            }
            Ok(())
        });
        let _ = send.send(result.map_err(|e| e.to_string()));
    });
    match receive.recv_timeout(HANG) {
        Ok(Ok(())) => Ok(Ok(())),
        Ok(Err(e)) if e.to_lowercase().contains("panic") => Err(format!("a panic became an error: {e}")),
        Ok(Err(e)) => Ok(Err(e)),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no answer in {HANG:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(match worker.join() {
            Err(panic) => format!("panicked: {}", panic_message(&panic)),
            Ok(()) => "the worker ended without an answer".to_string(),
        }),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn run(name: &str, cases: u32, strategy: impl Strategy<Value = String>) -> (usize, usize) {
    let outcomes = Outcomes::default();
    let result = TestRunner::new(crate::proptest_cases::config(cases)).run(&strategy, |script| {
        match attempt(&script) {
            Ok(Ok(())) => outcomes.started.fetch_add(1, Ordering::Relaxed),
            Ok(Err(e)) => {
                let mut samples = outcomes.samples.lock().unwrap();
                if samples.len() < 5 {
                    samples.push(format!("{e}\n  in: {}", script.replace('\n', " ")));
                }
                outcomes.refused.fetch_add(1, Ordering::Relaxed)
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n--- script ---\n{script}"))),
        };
        Ok(())
    });
    let (started, refused) = (outcomes.started.into_inner(), outcomes.refused.into_inner());
    eprintln!("{name}: {} cases, {started} ran batches, {refused} refused with an error", started + refused);
    for sample in outcomes.samples.into_inner().unwrap() {
        eprintln!("  e.g. {sample}");
    }
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    (started, refused)
}

/// Cases per property in `cargo test` (see [`crate::proptest_cases`]).
const CASES: u32 = 300;

#[test]
fn random_streaming_scripts_end_in_an_error_or_a_running_query() {
    let (started, refused) = run("grammar", CASES, script());
    let total = started + refused;
    // Proportions need enough cases (PROPTEST_CASES may ask for a handful).
    if total >= 100 {
        assert!(started > total / 15, "the grammar yields runnable queries ({started} of {total})");
        assert!(refused > total / 15, "and wrong ones ({refused} of {total})");
    }
}

#[test]
fn mutated_scripts_end_in_an_error_or_a_running_query() {
    let (started, refused) = run("mutations", CASES, mutated());
    let total = started + refused;
    assert_eq!(total, crate::proptest_cases::config(CASES).cases as usize, "every case ran");
    if total >= 100 {
        assert!(refused > total / 3, "most mutations break the script ({refused} of {total})");
    }
}
