//! The micro-batch loop (DESIGN §1): plan a batch's offsets, read, run the incremental plan,
//! write the sink, commit; triggers decide when; progress says how it went.

pub mod listener;
pub mod progress;
pub mod progress_file;
pub mod query;
pub mod recovery;
pub mod reporter;
pub(crate) mod status;
pub mod streaming_query;
pub mod trigger;

pub use listener::{QueryIdleEvent, QueryStartedEvent, QueryTerminatedEvent, StreamingQueryListener};
pub use progress::QueryProgress;
pub use query::StopHandle;
pub use status::QueryStatus;
pub use streaming_query::{StreamingQuery, StreamingQueryManager};
pub use trigger::Trigger;
