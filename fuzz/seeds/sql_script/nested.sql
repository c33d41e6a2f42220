SET spark.sql.session.timeZone = 'Europe/Paris';
SET sluice.sql.spark_functions = true;
SET spark.sql.shuffle.partitions = 2;
CREATE TABLE events (k STRING, ts TIMESTAMP, v BIGINT,
  address STRUCT<city STRING, geo STRUCT<lat DOUBLE, lon DOUBLE>>, tags ARRAY<BIGINT>, m MAP<STRING, BIGINT>,
  amount DECIMAL(10, 2), day DATE, WATERMARK FOR ts AS ts - INTERVAL '1' MINUTE)
  WITH (connector = 'file', path = 'events', format = 'json', bad_data = 'drop');
CREATE TABLE out WITH (connector = 'file', path = 'out', format = 'json');
INSERT INTO out
SELECT k, address.geo.lat AS lat, tags[1] AS first_tag, m['x'] AS x, date_format(ts, 'yyyy-MM-dd HH') AS hour,
       CAST(v AS INT) AS i, if(v > 1, 'big', 'small') AS size, v / 0 AS inf
FROM events WHERE k IN (SELECT k FROM events WHERE v > 1) OR k = 'a';
