//! The canary against the local S3 server: the replicate engine applies the canary's own
//! event, and the canary measures each replica's lag, reads the previous canary back, and
//! deletes old canaries; a replica that never receives is stale.

use std::time::Duration;

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use canary::{canary_body, canary_key, written_ms, Canary, CanaryConfig, Round, PREFIX};
use s3fanout::{Change, Clients, Config, Outcome, Replicator};

/// How long the test waits before it delivers the canary's event: the lag measured is at least
/// this.
const DELIVERY_DELAY: Duration = Duration::from_millis(400);

fn unique(name: &str) -> String {
    format!(
        "{name}-{}-{}",
        std::process::id(),
        canary::now_ms() % 1_000_000
    )
}

async fn create_bucket(clients: &Clients, bucket: &str, region: &str) {
    let mut request = clients.for_region(region).create_bucket().bucket(bucket);
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    request.send().await.unwrap();
}

struct Setup {
    clients: Clients,
    source: String,
    replicas: Vec<(String, String)>,
}

impl Setup {
    async fn new(name: &str) -> Self {
        let clients = Clients::from_env().await;
        let source = unique(&format!("{name}-src"));
        create_bucket(&clients, &source, "us-east-1").await;
        let mut replicas = Vec::new();
        for region in ["us-west-2", "eu-west-1"] {
            let bucket = unique(&format!("{name}-{region}"));
            create_bucket(&clients, &bucket, region).await;
            replicas.push((bucket, region.to_string()));
        }
        Setup {
            clients,
            source,
            replicas,
        }
    }

    fn targets(&self, replicas: &[(String, String)]) -> String {
        replicas
            .iter()
            .map(|(b, r)| format!("{b}@{r}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The replicate engine, replicating to `replicas` only.
    fn replicator(&self, replicas: &[(String, String)], clients: Clients) -> Replicator {
        let targets = self.targets(replicas);
        let config = Config::from_lookup(|name| match name {
            "SOURCE_BUCKETS" => Some(self.source.clone()),
            "REPLICA_TARGETS" => Some(targets.clone()),
            "REPLICATE_DELETES" => Some("true".into()),
            _ => None,
        })
        .unwrap();
        Replicator::new(config, clients)
    }

    async fn canary(&self, vars: &[(&str, &str)]) -> Canary {
        let targets = self.targets(&self.replicas);
        let config = CanaryConfig::from_lookup(|name| match name {
            "SOURCE_BUCKETS" => Some(self.source.clone()),
            "REPLICA_TARGETS" => Some(targets.clone()),
            _ => vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string()),
        })
        .unwrap();
        Canary::new(config, self.clients.for_region("us-east-1"))
            .await
            .unwrap()
    }

    fn client(&self) -> Client {
        self.clients.for_region("us-east-1")
    }
}

async fn canaries(client: &Client, bucket: &str) -> Vec<String> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(PREFIX)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// Runs a canary round while delivering its event to the replicate engine, as the queue
/// would, `DELIVERY_DELAY` after the write. Returns the round and the engine's report.
async fn round_with_delivery(
    setup: &Setup,
    canary: &Canary,
    replicator: &Replicator,
    wait: Duration,
) -> (Round, s3fanout::ChangeReport) {
    let before = canaries(&setup.client(), &setup.source).await;
    let deliver = async {
        loop {
            let now = canaries(&setup.client(), &setup.source).await;
            if let Some(key) = now.into_iter().find(|k| !before.contains(k)) {
                tokio::time::sleep(DELIVERY_DELAY).await;
                let mut change = Change::created(&setup.source, &key);
                change.event_time = written_ms(&key);
                return replicator.apply(&[change]).await.remove(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (round, report) = tokio::join!(canary.round(wait), deliver);
    (round.unwrap(), report)
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn measures_the_lag_of_every_replica_and_reads_the_previous_canary_back() {
    let setup = Setup::new("canary-lag").await;
    let replicator = setup.replicator(&setup.replicas, Clients::from_env().await);
    let canary = setup.canary(&[("CANARY_KEEP", "2")]).await;
    let wait = Duration::from_secs(15);

    let (first, report) = round_with_delivery(&setup, &canary, &replicator, wait).await;
    let body = canary_body(first.written_ms);
    for target in &report.targets {
        assert_eq!(target.outcome, Outcome::Copied, "{target:?}");
        // The engine reports what it copied, for BytesReplicated.
        assert_eq!(target.bytes, body.len() as u64);
    }
    assert_eq!(first.targets.len(), 2);
    for (target, (bucket, region)) in first.targets.iter().zip(&setup.replicas) {
        assert_eq!((&target.bucket, &target.region), (bucket, region));
        assert!(target.measured, "{target:?}");
        assert!(
            target.lag_ms >= DELIVERY_DELAY.as_millis() as u64 && target.lag_ms < 10_000,
            "{target:?}"
        );
        assert!(!target.stale);
        assert_eq!(
            target.read_back, None,
            "no earlier canary on the first round"
        );
    }

    let (second, _) = round_with_delivery(&setup, &canary, &replicator, wait).await;
    for target in &second.targets {
        assert!(target.measured && !target.stale, "{target:?}");
        assert_eq!(target.read_back, Some(Ok(())), "{target:?}");
    }

    // A replica whose copy of the previous canary is altered fails the read-back.
    let (bucket, _) = &setup.replicas[1];
    setup
        .clients
        .for_region("eu-west-1")
        .put_object()
        .bucket(bucket)
        .key(&second.key)
        .body("tampered".as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let (third, _) = round_with_delivery(&setup, &canary, &replicator, wait).await;
    assert_eq!(third.targets[0].read_back, Some(Ok(())));
    let failed = third.targets[1].read_back.clone().unwrap().unwrap_err();
    assert!(failed.contains("not what was written"), "{failed}");

    // Two kept: the third round deleted the first round's canary from the source.
    assert_eq!((first.deleted, second.deleted, third.deleted), (0, 0, 1));
    let mut kept = canaries(&setup.client(), &setup.source).await;
    kept.sort();
    assert_eq!(kept, [second.key.clone(), third.key.clone()]);
    assert!(!kept.contains(&canary_key(first.written_ms)));

    // The EMF lines carry each target's lag and read-back result.
    let lines: Vec<serde_json::Value> = canary::emf::lines(&third, 1)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["TargetBucket"], bucket.as_str());
    assert_eq!(lines[1]["CanaryReadFailed"], 1);
    assert_eq!(lines[0]["CanaryReadFailed"], 0);
    assert_eq!(lines[0]["CanaryStale"], 0);
}

#[tokio::test]
#[ignore = "needs the local S3 server (make test)"]
async fn a_replica_that_never_receives_is_stale() {
    let setup = Setup::new("canary-stale").await;
    // The engine replicates to the first replica only: the second never receives.
    let replicator = setup.replicator(&setup.replicas[..1], Clients::from_env().await);
    let canary = setup
        .canary(&[("CANARY_STALE_AFTER_MS", "1500"), ("CANARY_POLL_MS", "100")])
        .await;
    let wait = Duration::from_secs(2);

    let (first, _) = round_with_delivery(&setup, &canary, &replicator, wait).await;
    let (current, missing) = (&first.targets[0], &first.targets[1]);
    assert!(current.measured && !current.stale, "{current:?}");
    assert!(!missing.measured && missing.stale, "{missing:?}");
    assert!(missing.lag_ms >= 1500, "{missing:?}");

    // Next round: its lag counts from the oldest canary it misses, the first round's.
    let (second, _) = round_with_delivery(&setup, &canary, &replicator, wait).await;
    let missing = &second.targets[1];
    assert!(missing.stale, "{missing:?}");
    assert!(
        missing.lag_ms >= canary::now_ms() - first.written_ms - 1000,
        "lag {} ms should span both rounds",
        missing.lag_ms
    );
    assert!(missing.read_back.as_ref().unwrap().is_err(), "{missing:?}");
    assert_eq!(second.targets[0].read_back, Some(Ok(())));

    let lines: Vec<serde_json::Value> = canary::emf::lines(&second, 1)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (
            lines[0]["CanaryStale"].as_u64(),
            lines[1]["CanaryStale"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(lines[1]["CanaryReadFailed"], 1);
}
