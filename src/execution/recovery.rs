//! Where a query resumes from its checkpoint (DESIGN §1, "Recovery").

use std::collections::BTreeMap;

use serde_json::Value;

use crate::checkpoint::log::{decode_entry, encode_entry, EntryError, STATE_ENCODING, STATE_LAYOUT};
use crate::checkpoint::{BatchLog, CheckpointLocation, CommitEntry, OffsetEntry, QueryMetadata, ReadEntry};
use crate::operator::watermark::MultipleWatermarkPolicy;
use crate::plan::fingerprint::without_field_metadata;
use crate::state::store::MAX_STATE_PARTITIONS;
use crate::state::StateStoreKind;
use crate::{Result, SluiceError};

/// The position a query starts from.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// The next batch id to plan (after the replay, if any).
    pub next_batch_id: u64,
    /// A batch whose offsets were logged but never committed: it runs again, exactly as logged.
    pub replay: Option<OffsetEntry>,
    /// The state version to load before running (`None`: empty state).
    pub state_version: Option<u64>,
    /// The last batch whose offsets were logged, through which sources restore their own logs.
    pub sources_through: Option<u64>,
    /// Per source, where the next planned batch starts.
    pub source_starts: BTreeMap<String, Value>,
    /// Per watermarked source, `max - delay` before the next planned batch, ms.
    pub input_watermarks_ms: BTreeMap<String, i64>,
    /// The watermark of the last committed batch (`W_{k-1}` of the next planned batch), ms.
    pub last_watermark_ms: i64,
}

impl ResumePoint {
    /// Continue after committed batch `entry` (its commit `commit`) from state version `N`.
    fn committed(entry: OffsetEntry, commit: CommitEntry) -> Self {
        Self {
            next_batch_id: entry.batch_id + 1,
            replay: None,
            state_version: Some(entry.batch_id),
            sources_through: Some(entry.batch_id),
            source_starts: entry.sources.iter().map(|(k, r)| (k.clone(), r.end.clone())).collect(),
            input_watermarks_ms: commit.input_watermarks_ms,
            last_watermark_ms: entry.watermark_ms,
        }
    }

    /// Run logged batch `entry` again, from state version `N-1`.
    pub fn replaying(entry: OffsetEntry) -> Self {
        Self {
            next_batch_id: entry.batch_id + 1,
            state_version: entry.batch_id.checked_sub(1),
            sources_through: Some(entry.batch_id),
            source_starts: entry.sources.iter().map(|(k, r)| (k.clone(), r.end.clone())).collect(),
            input_watermarks_ms: entry.input_watermarks_ms.clone(),
            last_watermark_ms: entry.watermark_ms,
            replay: Some(entry),
        }
    }
}

/// Reads the offset and commit logs: if `commits/N` exists for the latest `offsets/N`, the query
/// continues with `N+1` from state version `N`; otherwise batch `N` runs again from state `N-1`.
///
/// A torn newest entry (empty, cut short or failing its checksum: a crash while it was written)
/// counts as never written, with a warning naming it: a torn newest `commits/N` means batch `N`
/// runs again from `offsets/N`; a torn newest `offsets/N` (without `commits/N`) means batch `N`
/// is planned afresh, as if the query had stopped after batch `N-1`.
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the file when the logs are unreadable or inconsistent: a
/// damaged entry below the newest (the history after it depends on it), a damaged `offsets/N`
/// whose batch was committed, or a missing `offsets/N-1` under a torn `offsets/N`.
pub async fn resume_point(offsets: &BatchLog, commits: &BatchLog) -> Result<ResumePoint> {
    let ids = offsets.batch_ids().await?;
    let Some(&newest) = ids.last() else {
        return Ok(ResumePoint::default());
    };
    let entry: OffsetEntry = match offsets.read_entry(newest).await? {
        ReadEntry::Valid(entry) => entry,
        ReadEntry::Missing => offsets.read_listed(newest).await?,
        ReadEntry::Torn(why) => {
            if !matches!(commits.read_entry::<CommitEntry>(newest).await?, ReadEntry::Missing) {
                return Err(offsets.error(
                    newest,
                    format!(
                        "corrupted log entry ({why}), yet batch {newest} was committed (commits/{newest} exists), so it \
                         cannot be planned afresh: restore the file or start over with a new checkpoint location"
                    ),
                ));
            }
            let previous = newest.checked_sub(1).filter(|p| ids.contains(p));
            tracing::warn!(
                file = %offsets.describe(newest),
                "the newest offset log entry is torn ({why}): a crash while it was written; batch {newest} is planned afresh"
            );
            match previous {
                Some(previous) => offsets.read_listed(previous).await?,
                None if newest == 0 => return Ok(ResumePoint::default()),
                None => {
                    return Err(offsets.error(
                        newest - 1,
                        "log entry missing below a torn newest entry; restore it or start over with a new checkpoint location",
                    ))
                }
            }
        }
    };
    let latest = entry.batch_id;
    let newest_commit = commits.latest().await?;
    let commit = match commits.read_entry::<CommitEntry>(latest).await? {
        ReadEntry::Valid(commit) => Some(commit),
        ReadEntry::Missing => None,
        ReadEntry::Torn(why) if newest_commit == Some(latest) => {
            tracing::warn!(
                file = %commits.describe(latest),
                "the newest commit log entry is torn ({why}): a crash while it was written; batch {latest} runs again"
            );
            None
        }
        ReadEntry::Torn(why) => {
            return Err(commits.error(
                latest,
                format!(
                    "corrupted log entry ({why}) below the newest; restore the file or start over with a new \
                     checkpoint location"
                ),
            ))
        }
    };
    Ok(match commit {
        Some(commit) => ResumePoint::committed(entry, commit),
        None => ResumePoint::replaying(entry),
    })
}

/// True when the checkpoint has no offset log entry yet: no batch was ever planned, so files
/// written before the first one (a torn `metadata`) can be written again.
async fn no_batch_planned(location: &CheckpointLocation) -> Result<bool> {
    Ok(BatchLog::new(location.clone(), "offsets").latest().await?.is_none())
}

/// Refuses a checkpoint whose state this build cannot read: state partitions filled by another
/// assignment of rows to partitions than this version's (each key would be looked up in a
/// partition that does not hold it; with one partition every layout is the same), or keys and
/// values written in another encoding (another `arrow-row` release: its bytes must never reach
/// this build's row parser).
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the stored and the current layout or encoding, and the
/// remedy.
pub fn check_state_layout(location: &CheckpointLocation, metadata: &QueryMetadata, has_state: bool) -> Result<()> {
    if !has_state {
        return Ok(());
    }
    if !metadata.state_encoding.is_empty() && metadata.state_encoding != STATE_ENCODING {
        return Err(location.error(
            "metadata",
            format!(
                "the checkpoint's state is encoded with {} (written by sluice {}), this version reads {STATE_ENCODING}; \
                 run the query with the version that wrote it, or start it with a new checkpoint location",
                metadata.state_encoding, metadata.sluice_version
            ),
        ));
    }
    if metadata.state_partitions == 1 || metadata.state_layout == STATE_LAYOUT {
        return Ok(());
    }
    Err(location.error(
        "metadata",
        format!(
            "the checkpoint's {} state partitions use state layout {} (written by sluice {}), this version reads layout \
             {STATE_LAYOUT}; run the query with the version that wrote it, or start it with a new checkpoint location",
            metadata.state_partitions, metadata.state_layout, metadata.sluice_version
        ),
    ))
}

/// Reads `metadata`, or writes it on a query's first run with the settings given; gives a
/// `metadata` written without a query id, state encoding or watermark policy one (the policy
/// `watermark_policy`, and writes it back, so it stays the same from then on).
///
/// A torn `metadata` of a checkpoint where no batch was planned yet (a crash during the first
/// start) is written again, with a warning.
///
/// # Errors
/// [`SluiceError::Checkpoint`] when the file is corrupted (also: a number of state partitions
/// outside 1 to [`MAX_STATE_PARTITIONS`]) or the checkpoint belongs to a query with other fixed
/// settings.
pub async fn load_or_create_metadata(
    location: &CheckpointLocation,
    state_partitions: usize,
    state_store: StateStoreKind,
    watermark_policy: MultipleWatermarkPolicy,
) -> Result<QueryMetadata> {
    let stored = match location.get("metadata").await? {
        Some(bytes) => match decode_entry::<QueryMetadata>(&bytes) {
            Err(EntryError::Torn(why)) => {
                if !no_batch_planned(location).await? {
                    Some(Err(EntryError::Torn(why)))
                } else {
                    tracing::warn!(file = %location.describe("metadata"), "the query metadata is torn ({why}): written again");
                    None
                }
            }
            decoded => Some(decoded),
        },
        None => None,
    };
    if let Some(decoded) = stored {
        let corrupted = |why: String| {
            location.error(
                "metadata",
                format!("corrupted query metadata ({why}); restore it or use a new checkpoint location"),
            )
        };
        let mut metadata = decoded.map_err(|e| corrupted(e.to_string()))?;
        if !(1..=MAX_STATE_PARTITIONS).contains(&metadata.state_partitions) {
            return Err(corrupted(format!(
                "state_partitions is {}, not from 1 to {MAX_STATE_PARTITIONS}",
                metadata.state_partitions
            )));
        }
        let stored_store = match metadata.state_store.as_str() {
            "" => StateStoreKind::Memory,
            name => StateStoreKind::parse(name)
                .ok_or_else(|| corrupted(format!("state_store is '{name}', not 'memory' or 'rocksdb'")))?,
        };
        if stored_store != state_store {
            tracing::warn!(
                checkpoint = %location.display(),
                "the checkpoint keeps its state in the {} state store, as it was first started: \
                 sluice.state_store = '{}' applies to new checkpoints only",
                stored_store.name(),
                state_store.name()
            );
        }
        match metadata.watermark_policy.as_str() {
            "" => {}
            name => {
                let stored = MultipleWatermarkPolicy::parse(name).map_err(|e| corrupted(e.to_string()))?;
                if stored != watermark_policy {
                    tracing::warn!(
                        checkpoint = %location.display(),
                        "the checkpoint combines its streams' watermarks with policy '{}', as it was first started: \
                         spark.sql.streaming.multipleWatermarkPolicy = '{}' applies to new checkpoints only",
                        stored.name(),
                        watermark_policy.name()
                    );
                }
            }
        }
        if metadata.id.is_empty() || metadata.state_encoding.is_empty() || metadata.watermark_policy.is_empty() {
            if metadata.id.is_empty() {
                metadata.id = uuid::Uuid::new_v4().to_string();
            }
            if metadata.state_encoding.is_empty() {
                metadata.state_encoding = STATE_ENCODING.to_string();
            }
            if metadata.watermark_policy.is_empty() {
                metadata.watermark_policy = watermark_policy.name().to_string();
            }
            write_metadata(location, &metadata).await?;
        }
        return Ok(metadata);
    }
    let metadata = QueryMetadata {
        id: uuid::Uuid::new_v4().to_string(),
        state_partitions,
        sluice_version: env!("CARGO_PKG_VERSION").to_string(),
        state_layout: STATE_LAYOUT,
        state_encoding: STATE_ENCODING.to_string(),
        state_store: state_store.name().to_string(),
        watermark_policy: watermark_policy.name().to_string(),
    };
    write_metadata(location, &metadata).await?;
    Ok(metadata)
}

async fn write_metadata(location: &CheckpointLocation, metadata: &QueryMetadata) -> Result<()> {
    location.put("metadata", encode_entry(metadata, true)).await
}

/// Error for a checkpoint whose sources differ from the query's.
pub fn source_mismatch(location: &CheckpointLocation, name: &str) -> SluiceError {
    location.error(
        "offsets",
        format!("the checkpoint has no offsets for source '{name}': it was written by a different query; use a new checkpoint location"),
    )
}

/// The checkpoint file listing the stateful operators whose state it holds.
const STATEFUL_OPERATORS: &str = "state/operators.json";

/// Records `operators` (see [`crate::plan::fingerprint`]) in a new checkpoint, or checks that a
/// checkpoint's state was written by operators with the same definitions.
///
/// A torn file of a checkpoint where no batch was planned yet is written again, with a warning.
///
/// # Errors
/// [`SluiceError::Checkpoint`] naming the first operator that changed, with its old and new
/// definition, when the query no longer matches its checkpoint (its state would be decoded with
/// another layout or merged into results of another definition); also when the file is corrupted.
pub async fn check_stateful_operators(location: &CheckpointLocation, operators: &[String]) -> Result<()> {
    let write = || location.put(STATEFUL_OPERATORS, encode_entry(&operators, true));
    let Some(bytes) = location.get(STATEFUL_OPERATORS).await? else {
        return write().await;
    };
    let stored: Vec<String> = match decode_entry(&bytes) {
        Ok(stored) => stored,
        Err(EntryError::Torn(why)) => {
            if no_batch_planned(location).await? {
                tracing::warn!(file = %location.describe(STATEFUL_OPERATORS), "the list of stateful operators is torn ({why}): written again");
                return write().await;
            }
            return Err(location.error(
                STATEFUL_OPERATORS,
                format!("corrupted list of stateful operators ({why}); restore it or use a new checkpoint location"),
            ));
        }
        Err(e) => {
            return Err(location.error(
                STATEFUL_OPERATORS,
                format!("corrupted list of stateful operators ({e}); restore it or use a new checkpoint location"),
            ))
        }
    };
    let changed = |what: String| {
        location.error(
            STATEFUL_OPERATORS,
            format!(
                "the query's stateful operators changed since this checkpoint was written: {what}. Its state cannot be \
                 read by the changed query (nor, where only a state format differs, by this sluice release); run the \
                 original query, with the sluice release that wrote the checkpoint, on it, or start the changed query \
                 with a new checkpoint location"
            ),
        )
    };
    // Lines written before field metadata was left out of them compare without it.
    let stored: Vec<String> = stored.iter().map(|line| without_field_metadata(line)).collect();
    for (i, (old, new)) in stored.iter().zip(operators).enumerate() {
        if old != new {
            return Err(changed(format!("operator {i} was `{old}` and is now `{new}`")));
        }
    }
    if stored.len() != operators.len() {
        let list = |ops: &[String]| if ops.is_empty() { "none".to_string() } else { ops.join("`, `") };
        return Err(changed(format!(
            "the checkpoint has {} stateful operator(s) (`{}`), the query has {} (`{}`)",
            stored.len(),
            list(&stored),
            operators.len(),
            list(operators)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state store is fixed at the first start: a restart asking for another keeps it; a
    /// checkpoint from before it was recorded is the in-memory store's; a name sluice does not
    /// know is refused.
    #[tokio::test]
    async fn the_state_store_of_the_first_start_stays() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let first =
            load_or_create_metadata(&location, 2, StateStoreKind::RocksDb, MultipleWatermarkPolicy::Min).await.unwrap();
        assert_eq!(first.state_store, "rocksdb");
        let again =
            load_or_create_metadata(&location, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Min).await.unwrap();
        assert_eq!(again.state_store, "rocksdb");
        let old = CheckpointLocation::open("memory://").unwrap();
        old.put(
            "metadata",
            r#"{"id": "q", "state_partitions": 2, "sluice_version": "0.1.0", "state_encoding": "e"}"#.into(),
        )
        .await
        .unwrap();
        assert_eq!(
            load_or_create_metadata(&old, 2, StateStoreKind::RocksDb, MultipleWatermarkPolicy::Min)
                .await
                .unwrap()
                .state_store,
            ""
        );
        old.put(
            "metadata",
            r#"{"id": "q", "state_partitions": 2, "sluice_version": "0.1.0", "state_store": "hdfs"}"#.into(),
        )
        .await
        .unwrap();
        let err = load_or_create_metadata(&old, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Min)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("state_store is 'hdfs'") && err.contains("metadata"), "{err}");
    }

    /// The watermark policy is fixed at the first start, as Spark keeps the one its offset log
    /// recorded; a checkpoint from before it was recorded takes the setting it next runs with.
    #[tokio::test]
    async fn the_watermark_policy_of_the_first_start_stays() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let first =
            load_or_create_metadata(&location, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Max).await.unwrap();
        assert_eq!(first.watermark_policy, "max");
        let again =
            load_or_create_metadata(&location, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Min).await.unwrap();
        assert_eq!(again.watermark_policy, "max");
        let old = CheckpointLocation::open("memory://").unwrap();
        old.put("metadata", r#"{"id": "q", "state_partitions": 2, "sluice_version": "0.1.0"}"#.into()).await.unwrap();
        let policy = |p| load_or_create_metadata(&old, 2, StateStoreKind::Memory, p);
        assert_eq!(policy(MultipleWatermarkPolicy::Max).await.unwrap().watermark_policy, "max");
        assert_eq!(policy(MultipleWatermarkPolicy::Min).await.unwrap().watermark_policy, "max", "written back");
        old.put("metadata", r#"{"state_partitions": 2, "sluice_version": "0", "watermark_policy": "avg"}"#.into())
            .await
            .unwrap();
        let err = policy(MultipleWatermarkPolicy::Min).await.unwrap_err().to_string();
        assert!(err.contains("'avg'") && err.contains("metadata"), "{err}");
    }

    #[tokio::test]
    async fn metadata_without_a_query_id_loads_and_gets_one_that_stays() {
        let location = CheckpointLocation::open("memory://").unwrap();
        location.put("metadata", r#"{"state_partitions": 4, "sluice_version": "0.1.0"}"#.into()).await.unwrap();
        let first =
            load_or_create_metadata(&location, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Min).await.unwrap();
        assert_eq!(first.state_partitions, 4, "the checkpoint's setting wins");
        assert_eq!(first.id.len(), 36, "a UUID: {}", first.id);
        assert_eq!(
            load_or_create_metadata(&location, 2, StateStoreKind::Memory, MultipleWatermarkPolicy::Min)
                .await
                .unwrap()
                .id,
            first.id,
            "written back"
        );
        assert_eq!(first.state_encoding, STATE_ENCODING, "recorded for the next start");
    }

    #[tokio::test]
    async fn state_in_another_encoding_is_refused_naming_both_encodings() {
        let location = CheckpointLocation::open("memory://").unwrap();
        let entry = r#"{"state_partitions": 1, "sluice_version": "0.0.9", "state_layout": 1, "state_encoding": "arrow-row 58.0.0"}"#;
        location.put("metadata", entry.into()).await.unwrap();
        let metadata =
            load_or_create_metadata(&location, 1, StateStoreKind::Memory, MultipleWatermarkPolicy::Min).await.unwrap();
        assert!(check_state_layout(&location, &metadata, false).is_ok(), "a stateless query reads no state");
        let error = check_state_layout(&location, &metadata, true).unwrap_err().to_string();
        assert!(
            error.contains("arrow-row 58.0.0 (written by sluice 0.0.9)") && error.contains(STATE_ENCODING),
            "{error}"
        );
        assert!(error.contains("new checkpoint location"), "{error}");
    }

    /// `arrow-row` is pinned in `Cargo.toml`; the lock file must resolve the release the state
    /// encoding names, or the recorded encoding would not say what wrote the bytes.
    #[test]
    fn the_state_encoding_names_the_locked_arrow_row_release() {
        let lock = include_str!("../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"arrow-row\"\n"))
            .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
            .map(|v| v.trim_end_matches('"'));
        assert_eq!(locked.map(|v| format!("arrow-row {v}")).as_deref(), Some(STATE_ENCODING));
    }
}
