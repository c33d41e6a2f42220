//! The socket source (`connector = 'socket'`): the word count of `sql/examples/socket_word_count.sql`
//! over lines written by a test server, its errors, what a restart loses, and the warning that it
//! cannot replay.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice::sink::MemorySink;
use sluice::{OutputMode, StreamContext, StreamingQuery};

use crate::common::{rows, sink_rows_by_batch};

/// A server on a free port of 127.0.0.1 that writes `data` to the first client and keeps the
/// connection open until the returned stream is dropped.
fn serve(data: &'static [u8]) -> (u16, std::thread::JoinHandle<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        client.write_all(data).unwrap();
        client
    });
    (port, server)
}

/// `sql/examples/socket_word_count.sql` reading port `port`, without its console sink table.
fn word_count_script(port: u16) -> String {
    let example = std::fs::read_to_string("sql/examples/socket_word_count.sql").unwrap();
    let script = example.replace("port = '9999'", &format!("port = '{port}'"));
    assert_ne!(script, example, "the example reads port 9999");
    script
}

/// Starts the word count with its sink `word_counts` in memory, at `checkpoint`.
async fn start_word_count(port: u16, checkpoint: &str) -> sluice::Result<(StreamingQuery, MemorySink)> {
    let script = word_count_script(port);
    let console = "CREATE TABLE word_counts WITH (connector = 'console', output_mode = 'complete');";
    assert!(script.contains(console));
    let mut ctx = StreamContext::new();
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("word_counts", OutputMode::Complete, move || Box::new(for_query.clone()));
    let definitions = ctx.execute(&script.replace(console, "")).await?;
    Ok((ctx.start(&definitions[0], checkpoint).await?, sink))
}

/// Runs batches until the last output, sorted, is `expected` (10 s at most).
async fn run_until(query: &mut StreamingQuery, sink: &MemorySink, expected: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        query.run_next_batch().await.unwrap();
        let mut last = sink.batches().values().last().map(|b| rows(b)).unwrap_or_default();
        last.sort();
        if last == expected {
            return;
        }
        assert!(Instant::now() < deadline, "after 10 s the counts are {last:?}, not {expected:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_example_word_count_counts_the_words_of_every_line_in_complete_mode() {
    // A CRLF line end, and a last line without a newline, a line once the server closes.
    let (port, server) = serve(b"to be or not to be\r\nthat is the question\nto be");
    let (mut query, sink) = start_word_count(port, "memory://").await.unwrap();
    drop(server.join().unwrap());
    let expected = ["be,3", "is,1", "not,1", "or,1", "question,1", "that,1", "the,1", "to,3"];
    run_until(&mut query, &sink, &expected).await;
    let read: u64 = query.recent_progress().iter().map(|p| p.num_input_rows).sum();
    assert_eq!(read, 3, "three lines");
    // The server closing the connection does not stop the query: it keeps running with no new lines.
    assert!(!query.run_next_batch().await.unwrap(), "no new lines, no batch");
}

#[tokio::test]
async fn connection_refused_fails_the_start_naming_host_and_port() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut ctx = StreamContext::new();
    ctx.register_sink("out", OutputMode::Append, || Box::new(MemorySink::new()));
    let sql = format!("CREATE TABLE lines WITH (connector = 'socket', host = '127.0.0.1', port = '{port}')");
    ctx.execute(&sql).await.unwrap();
    let definitions = ctx.execute("INSERT INTO out SELECT value FROM lines").await.unwrap();
    let err = ctx.start(&definitions[0], "memory://").await.unwrap_err().to_string();
    assert!(err.contains(&format!("source 'lines': cannot connect to 127.0.0.1:{port}")), "{err}");
    assert!(err.contains(&format!("start the server first (for a test: nc -lk {port})")), "{err}");
}

#[tokio::test]
async fn options_are_checked_when_the_table_is_created() {
    let mut ctx = StreamContext::new();
    for (options, expected) in [
        ("host = 'localhost'", "needs the option port"),
        ("port = '9999'", "needs the option host"),
        ("host = 'localhost', port = '70000'", "option port must be a TCP port from 1 to 65535, got '70000'"),
        ("host = 'localhost', port = '9999', bad_data = 'skip'", "unknown bad_data value 'skip'"),
    ] {
        let err = ctx.execute(&format!("CREATE TABLE l WITH (connector = 'socket', {options})")).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{options}: {err}");
    }
    let err = ctx
        .execute("CREATE TABLE l (line STRING) WITH (connector = 'socket', host = 'h', port = '1')")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("produces the columns (value STRING)"), "{err}");
}

/// Starts `INSERT INTO out SELECT value FROM lines` over `port` with `bad_data`.
async fn start_lines(port: u16, bad_data: &str) -> (StreamingQuery, MemorySink) {
    let mut ctx = StreamContext::new();
    let sink = MemorySink::new();
    let for_query = sink.clone();
    ctx.register_sink("out", OutputMode::Append, move || Box::new(for_query.clone()));
    let sql = format!(
        "CREATE TABLE lines WITH (connector = 'socket', host = '127.0.0.1', port = '{port}', bad_data = '{bad_data}')"
    );
    ctx.execute(&sql).await.unwrap();
    let definitions = ctx.execute("INSERT INTO out SELECT value FROM lines").await.unwrap();
    (ctx.start(&definitions[0], "memory://").await.unwrap(), sink)
}

/// "ok\n" (bytes 0-2), then "b\xffd\n" whose invalid byte is at offset 4 of the stream, then "end\n".
const WITH_LATIN1: &[u8] = b"ok\nb\xffd\nend\n";

/// Runs batches until 3 lines are read; the result of the batch that read the last one.
async fn read_three_lines(query: &mut StreamingQuery) -> sluice::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = 0;
    while lines < 3 {
        assert!(Instant::now() < deadline, "3 lines not read within 10 s");
        query.run_next_batch().await?;
        lines = query.recent_progress().iter().map(|p| p.num_input_rows + p.bad_records_dropped()).sum();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_line_that_is_not_utf8_fails_naming_its_byte_offset() {
    let (port, _server) = serve(WITH_LATIN1);
    let (query, _) = start_lines(port, "fail").await;
    // Lines may arrive over several batches; the one reading line 2 fails.
    let err = loop {
        if let Err(e) = query.run_next_batch().await {
            break e.to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        err,
        format!(
            "malformed record in socket 127.0.0.1:{port} at line 2: the line is not valid UTF-8 (first invalid byte at \
             byte offset 4 of the stream). Fix the record, or set the source option bad_data = 'drop' to skip such records"
        )
    );
}

#[tokio::test]
async fn a_line_that_is_not_utf8_is_dropped_and_counted_under_bad_data_drop() {
    let (port, _server) = serve(WITH_LATIN1);
    let (mut query, sink) = start_lines(port, "drop").await;
    read_three_lines(&mut query).await.unwrap();
    assert_eq!(rows(&sink.all()), vec!["ok", "end"]);
    assert_eq!(query.recent_progress().iter().map(|p| p.bad_records_dropped()).sum::<u64>(), 1);
}

#[tokio::test]
async fn a_restart_loses_the_uncommitted_lines_and_continues_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().to_str().unwrap();
    let (port, server) = serve(b"a b a\n");
    let (mut query, sink) = start_word_count(port, checkpoint).await.unwrap();
    run_until(&mut query, &sink, &["a,2", "b,1"]).await;
    let batch = query.recent_progress().last().unwrap().batch_id;
    // The process dies after the sink got the batch but before its commit.
    drop(query);
    drop(server.join().unwrap());
    std::fs::remove_file(dir.path().join(format!("commits/{batch}"))).unwrap();

    let (port, _server) = serve(b"c a\n");
    let (mut restarted, sink) = start_word_count(port, checkpoint).await.unwrap();
    // The replayed batch has no socket rows (its lines were in the dead process), so the state of
    // the batch before it is all that is left; the new lines count from there.
    assert!(restarted.run_next_batch().await.unwrap());
    assert_eq!(restarted.recent_progress()[0].num_input_rows, 0);
    run_until(&mut restarted, &sink, &["a,1", "c,1"]).await;
    let offsets = |id: i64| -> serde_json::Value {
        sluice::checkpoint::decode_entry(&std::fs::read(dir.path().join(format!("offsets/{id}"))).unwrap()).unwrap()
    };
    let (replayed, next) = (offsets(batch), offsets(batch + 1));
    assert_eq!(next["sources"]["lines"]["start"], replayed["sources"]["lines"]["end"]);
    assert_eq!(next["sources"]["lines"]["end"], 2, "one line after the one of the first run");
}

#[test]
fn sluice_run_of_the_example_warns_that_the_checkpoint_cannot_replay_socket_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (port, server) = serve(b"hello world\nhello\n");
    let out = dir.path().join("out");
    let script = word_count_script(port).replace(
        "WITH (connector = 'console', output_mode = 'complete')",
        &format!("WITH (connector = 'file', path = '{}', format = 'json', output_mode = 'complete')", out.display()),
    );
    let sql = dir.path().join("q.sql");
    std::fs::write(&sql, script).unwrap();
    let checkpoint = dir.path().join("cp");
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", sql.to_str().unwrap(), "--checkpoint", checkpoint.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let counts = loop {
        let last = if out.is_dir() { sink_rows_by_batch(&out).into_values().last() } else { None };
        let mut counts: Vec<String> =
            last.unwrap_or_default().iter().map(|r| format!("{},{}", r["word"], r["count"])).collect();
        counts.sort();
        if counts.len() == 2 || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SIGTERM stops the query after its batch; closing its own connection is not worth a warning.
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(counts, vec!["\"hello\",2", "\"world\",1"], "{stderr}");
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("closed the connection"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "no terminal colours in a pipe: {stderr}");
    assert!(stderr.contains(" WARN "), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the socket source (localhost:{port}) cannot replay its input: lines received but not committed"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("the checkpoint {}", checkpoint.canonicalize().unwrap().display())), "{stderr}");
    drop(server.join().unwrap());
}
