CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'parquet');
INSERT INTO out
SELECT k, session_window.start AS s, session_window.end AS e, count(*) AS n FROM events GROUP BY k, session_window(ts, INTERVAL '5' SECOND);
