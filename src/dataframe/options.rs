//! Option names of the DataFrame API's readers and writers: sluice's connector options, also
//! accepted in Spark's spelling.

/// Spark's names whose sluice name is not just the snake-case form.
const SPARK_NAMES: &[(&str, &str)] = &[
    ("kafka.bootstrap.servers", "bootstrap_servers"),
    ("subscribe", "topic"),
    ("subscribepattern", "topic_pattern"),
    ("checkpointlocation", "checkpoint_location"),
];

/// The connector option `key` names: Spark's aliases mapped, camelCase turned into snake_case
/// (`maxFilesPerTrigger` → `max_files_per_trigger`); Kafka client settings (`kafka.*`) pass
/// unchanged.
pub(crate) fn option_key(key: &str) -> String {
    let lower = key.to_ascii_lowercase();
    if let Some((_, name)) = SPARK_NAMES.iter().find(|(spark, _)| *spark == lower) {
        return name.to_string();
    }
    if lower.starts_with("kafka.") {
        return key.to_string();
    }
    let mut snake = String::with_capacity(key.len() + 4);
    for (i, c) in key.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 && !snake.ends_with('_') {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::option_key;

    #[test]
    fn spark_spellings_become_connector_options() {
        assert_eq!(option_key("maxFilesPerTrigger"), "max_files_per_trigger");
        assert_eq!(option_key("max_files_per_trigger"), "max_files_per_trigger");
        assert_eq!(option_key("kafka.bootstrap.servers"), "bootstrap_servers");
        assert_eq!(option_key("subscribe"), "topic");
        assert_eq!(option_key("kafka.group.id"), "kafka.group.id");
        assert_eq!(option_key("checkpointLocation"), "checkpoint_location");
    }
}
