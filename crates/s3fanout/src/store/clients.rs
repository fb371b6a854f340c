//! One place that builds S3 clients: region per bucket, endpoint override, path style, retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::Client;

/// Attempts per request (first try included) unless `AWS_MAX_ATTEMPTS` says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Region used when neither the event nor the environment names one.
const FALLBACK_REGION: &str = "us-east-1";

/// S3 clients, one per region, sharing credentials and connection pool.
#[derive(Debug)]
pub struct Clients {
    base: SdkConfig,
    path_style: bool,
    by_region: Mutex<HashMap<String, Client>>,
    fixed: Option<Client>,
}

impl Clients {
    /// Loads credentials, region, endpoint and retry settings from the standard AWS environment:
    /// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_S3` for S3-compatible servers, `AWS_MAX_ATTEMPTS`
    /// and `AWS_RETRY_MODE` for retries (default here: standard mode, 5 attempts, exponential
    /// backoff with jitter).
    pub async fn from_env() -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        );
        let retry_set = ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
        if !retry_set {
            loader = loader
                .retry_config(RetryConfig::standard().with_max_attempts(DEFAULT_MAX_ATTEMPTS));
        }
        Self::new(loader.load().await, endpoint_override().is_some())
    }

    /// Builds from an explicit SDK configuration; `path_style` forces path-style addressing,
    /// which S3-compatible servers on an IP address or `localhost` need.
    pub fn new(base: SdkConfig, path_style: bool) -> Self {
        Clients {
            base,
            path_style,
            by_region: Mutex::new(HashMap::new()),
            fixed: None,
        }
    }

    /// Uses one prebuilt client for every region (for example a mocked client in unit tests).
    pub fn fixed(client: Client) -> Self {
        let base = SdkConfig::builder().build();
        Clients {
            fixed: Some(client),
            ..Self::new(base, false)
        }
    }

    /// The region of the function itself, used for buckets whose region an event does not give.
    pub fn default_region(&self) -> String {
        self.base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| FALLBACK_REGION.to_string())
    }

    /// The client for a region; created on first use and kept.
    pub fn for_region(&self, region: &str) -> Client {
        if let Some(client) = &self.fixed {
            return client.clone();
        }
        let mut clients = self.by_region.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_string())
            .or_insert_with(|| {
                let config = aws_sdk_s3::config::Builder::from(&self.base)
                    .region(Region::new(region.to_string()))
                    .force_path_style(self.path_style)
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }
}

/// The endpoint set through the SDK's own variables, if any. A custom endpoint is an
/// S3-compatible server, which rarely resolves virtual-hosted bucket names: use path style there.
fn endpoint_override() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}
