CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json', max_files_per_trigger = '1');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json');
INSERT INTO out
SELECT k, ts, v FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k, ts ORDER BY ts) AS rn FROM events) WHERE rn = 1;
