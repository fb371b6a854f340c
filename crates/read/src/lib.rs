//! Read objects from N full replicas of an S3 bucket, with no primary.
//!
//! Each request starts at a different replica (weighted round-robin, nearer replicas weighing
//! more; the turns begin at a replica drawn at random when the reader is made, so that
//! programs making one read per process spread their reads too, unless the order is listed),
//! moves to the next on connection errors, timeouts, throttling, 5xx and (by default) 404, and
//! gives up only when every replica failed, with one error naming each replica and its
//! answer. 403 and 400 are returned at once: they would be the same everywhere. The exception
//! is a 403 saying that the replica holds the object archived (`InvalidObjectState`,
//! `ObjectNotInActiveTierError`): another replica may hold it readable, so the read moves on.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use s3fanout_read::{parse_replicas, ReadConfig, Reader};
//! let replicas = parse_replicas("photos-usw2@us-west-2,photos-euw1@eu-west-1?prefix=mirror%2F")?;
//! let reader = Reader::new(replicas, ReadConfig::default()).await?;
//! let served = reader.get("2026/01/red flower.jpg", None).await?;
//! println!("from {}", served.replica);
//! let mut body = served.output.body.into_async_read();
//! tokio::io::copy(&mut body, &mut tokio::io::sink()).await?;
//! # Ok(()) }
//! ```

pub mod breaker;
pub mod budget;
pub mod config;
mod engine;
pub mod error;
mod health;
pub mod latency;
pub mod metrics;
pub mod order;
mod reader;
pub mod replica;
pub mod resume;
mod s3;

pub use breaker::BreakerConfig;
pub use budget::BudgetConfig;
pub use config::{Hedge, ReadConfig};
pub use engine::Served;
pub use error::{Answer, Attempt, ConfigError, MissingPolicy, ReadError, ReadErrorKind};
pub use metrics::{Gauges, MetricsSink};
pub use order::{Distance, ReplicaOrder, RotationStart};
pub use reader::{ByteRange, MetricsTask, Reader};
pub use replica::{parse_replicas, Replica};
pub use resume::ResumeError;
