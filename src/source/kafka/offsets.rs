//! Offsets per topic and partition: the Kafka source's offset in the offsets log, written as
//! Spark's `KafkaSourceOffset` JSON, `{"topic":{"0":23,"1":45}}`, and the rate limit that spreads
//! `max_offsets_per_trigger` over the partitions.

use std::collections::BTreeMap;

use serde_json::Value;

/// An offset per topic and partition: the next offset to read (a range end is exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionOffsets(BTreeMap<String, BTreeMap<i32, i64>>);

impl PartitionOffsets {
    /// Reads an offset written by [`Self::to_json`].
    ///
    /// # Errors
    /// A message saying what is wrong when `value` is not an object of topics holding objects of
    /// partition numbers and offsets, not negative.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let offsets = Self::parse_value(value)?;
        let negative = offsets
            .iter()
            .find(|(_, _, o)| *o < 0)
            .map(|(t, p, o)| format!("topic '{t}' partition {p} has the negative offset {o}"));
        negative.map_or(Ok(offsets), Err)
    }

    /// Reads Spark's `startingOffsets` JSON, where `-2` stands for the earliest offset and `-1`
    /// for the latest.
    ///
    /// # Errors
    /// A message saying what is wrong when `text` is not such JSON.
    pub fn parse_starting(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let offsets = Self::parse_value(&value)?;
        let invalid = offsets.iter().find(|(_, _, o)| *o < -2).map(|(t, p, o)| {
            format!("topic '{t}' partition {p} has the offset {o}; use -2 (earliest), -1 (latest) or a real offset")
        });
        invalid.map_or(Ok(offsets), Err)
    }

    fn parse_value(value: &Value) -> Result<Self, String> {
        let topics = value.as_object().ok_or("expected a JSON object of topics")?;
        let mut offsets = Self::default();
        for (topic, partitions) in topics {
            let partitions =
                partitions.as_object().ok_or_else(|| format!("topic '{topic}' must map partitions to offsets"))?;
            for (partition, offset) in partitions {
                let p = partition
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p >= 0)
                    .ok_or_else(|| format!("topic '{topic}': '{partition}' is not a partition number"))?;
                let o = offset
                    .as_i64()
                    .ok_or_else(|| format!("topic '{topic}' partition {p}: {offset} is not an offset"))?;
                offsets.set(topic, p, o);
            }
        }
        Ok(offsets)
    }

    /// The offsets as Spark's `KafkaSourceOffset` JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }

    /// The offset of `topic` partition `partition`, if any.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    /// Sets the offset of `topic` partition `partition`.
    pub fn set(&mut self, topic: &str, partition: i32, offset: i64) {
        self.0.entry(topic.to_string()).or_default().insert(partition, offset);
    }

    /// Removes the offset of `topic` partition `partition`.
    pub fn remove(&mut self, topic: &str, partition: i32) {
        if let Some(partitions) = self.0.get_mut(topic) {
            partitions.remove(&partition);
            if partitions.is_empty() {
                self.0.remove(topic);
            }
        }
    }

    /// The topics named, in name order.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Every (topic, partition, offset), by topic name then partition.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.0.iter().flat_map(|(t, ps)| ps.iter().map(move |(p, o)| (t.as_str(), *p, *o)))
    }

    /// `end` limited to `limit` offsets past `start` in all, shared by the partitions in
    /// proportion to their backlog: Spark's `KafkaMicroBatchStream.rateLimit`. A partition's
    /// share is `limit * backlog / total backlog`, rounded down, or up when below 1; a partition
    /// missing from `start` is new and starts at offset 0.
    pub fn rate_limited(start: &Self, end: &Self, limit: u64) -> Self {
        let begin = |t: &str, p: i32| start.get(t, p).unwrap_or(0);
        let total: f64 = end.iter().map(|(t, p, e)| (e - begin(t, p)).max(0) as f64).sum();
        if total < 1.0 {
            return end.clone();
        }
        let mut limited = end.clone();
        for (t, p, e) in end.iter() {
            let size = e - begin(t, p);
            if size > 0 {
                let prorate = limit as f64 * (size as f64 / total);
                let share = if prorate < 1.0 { prorate.ceil() } else { prorate.floor() } as i64;
                limited.set(t, p, e.min(begin(t, p).saturating_add(share)));
            }
        }
        limited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(json: &str) -> PartitionOffsets {
        PartitionOffsets::from_json(&serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn json_round_trips_as_sparks_kafka_source_offset() {
        let o = offsets(r#"{"t":{"0":23,"1":45},"u":{"10":2}}"#);
        assert_eq!(o.to_json().to_string(), r#"{"t":{"0":23,"1":45},"u":{"10":2}}"#);
        assert_eq!(o.iter().collect::<Vec<_>>(), vec![("t", 0, 23), ("t", 1, 45), ("u", 10, 2)]);
        for bad in [r#"[1]"#, r#"{"t":1}"#, r#"{"t":{"a":1}}"#, r#"{"t":{"0":"x"}}"#, r#"{"t":{"0":-1}}"#] {
            assert!(PartitionOffsets::from_json(&serde_json::from_str(bad).unwrap()).is_err(), "{bad}");
        }
        assert_eq!(PartitionOffsets::parse_starting(r#"{"t":{"0":-1,"1":-2}}"#).unwrap().get("t", 1), Some(-2));
    }

    #[test]
    fn rate_limit_spreads_by_backlog_as_spark() {
        let start = offsets(r#"{"t":{"0":0,"1":100,"2":5}}"#);
        // Backlogs 300, 100, 0 (and the new partition 3: 600 from 0); total 1000.
        let end = offsets(r#"{"t":{"0":300,"1":200,"2":5,"3":600}}"#);
        let limited = PartitionOffsets::rate_limited(&start, &end, 100);
        assert_eq!(limited, offsets(r#"{"t":{"0":30,"1":110,"2":5,"3":60}}"#));
        // A share below 1 rounds up, so every partition with a backlog moves.
        let limited = PartitionOffsets::rate_limited(&start, &end, 1);
        assert_eq!(limited, offsets(r#"{"t":{"0":1,"1":101,"2":5,"3":1}}"#));
        // A limit above the backlog takes everything.
        assert_eq!(PartitionOffsets::rate_limited(&start, &end, 5000), end);
    }
}
