CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '10' SECOND)
  WITH (connector = 'file', path = 'events', format = 'json');
CREATE TABLE names (k STRING, name STRING) WITH (connector = 'file', path = 'other', format = 'csv', header = 'false');
CREATE EXTERNAL TABLE lookup (k STRING, weight DOUBLE) STORED AS CSV LOCATION 'other' OPTIONS ('format.has_header' 'true');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json', output_mode = 'update');
INSERT INTO out
SELECT e.k, l.weight, count(*) AS n FROM events e JOIN (VALUES ('a', 1.5), ('b', 2.0)) AS l(k, weight) ON e.k = l.k
GROUP BY e.k, l.weight;
INSERT INTO out SELECT DISTINCT k FROM events;
