//! S3 clients per region and endpoint, and what an SDK error means for failover.

use std::collections::HashMap;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::config::ReadConfig;
use crate::error::Answer;
use crate::replica::Replica;

/// One client per distinct (region, endpoint), in the order of `replicas`.
pub async fn clients(replicas: &[Replica], config: &ReadConfig) -> Vec<Client> {
    let base = aws_config::defaults(BehaviorVersion::latest()).load().await;
    // S3-compatible servers and proxies rarely resolve virtual-hosted bucket names.
    let env_endpoint = base.endpoint_url().is_some()
        || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()));
    let mut made: HashMap<(String, Option<String>), Client> = HashMap::new();
    replicas
        .iter()
        .map(|replica| {
            made.entry((replica.region.clone(), replica.endpoint.clone()))
                .or_insert_with(|| {
                    let mut builder = aws_sdk_s3::config::Builder::from(&base)
                        .region(Region::new(replica.region.clone()))
                        .retry_config(
                            RetryConfig::standard()
                                .with_max_attempts(config.retries_per_replica + 1)
                                .with_initial_backoff(std::time::Duration::from_millis(20)),
                        )
                        .timeout_config(
                            TimeoutConfig::builder()
                                .connect_timeout(config.connect_timeout)
                                .build(),
                        );
                    if let Some(endpoint) = &replica.endpoint {
                        builder = builder.endpoint_url(endpoint);
                    }
                    if replica.endpoint.is_some() || env_endpoint {
                        builder = builder.force_path_style(true);
                    }
                    Client::from_conf(builder.build())
                })
                .clone()
        })
        .collect()
}

/// What an SDK error says about the replica.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> Answer
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(ctx) => {
            let answer = from_status(
                ctx.raw().status().as_u16(),
                ctx.err().code().map(str::to_string),
                ctx.err().message().map(str::to_string),
            );
            match answer {
                Answer::Archived { code, .. } => Answer::Archived {
                    code,
                    storage_class: archive_of(ctx.err()),
                },
                answer => answer,
            }
        }
        SdkError::ConstructionFailure(_) => Answer::Rejected {
            status: 0,
            code: None,
            message: Some(innermost(&err)),
        },
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            if status >= 400 {
                from_status(status, None, None)
            } else {
                Answer::Connection(format!("unreadable response: {}", innermost(&err)))
            }
        }
        _ => Answer::Connection(innermost(&err)),
    }
}

/// Where a GET's `InvalidObjectState` answer says the object is archived: its storage class,
/// and for Intelligent-Tiering the access tier.
fn archive_of(err: &(dyn std::any::Any + 'static)) -> Option<String> {
    let GetObjectError::InvalidObjectState(state) = err.downcast_ref::<GetObjectError>()? else {
        return None;
    };
    let class = state.storage_class().map(|c| c.as_str().to_string());
    let tier = state.access_tier().map(|t| t.as_str().to_string());
    match (class, tier) {
        (Some(class), Some(tier)) => Some(format!("{class} {tier}")),
        (class, tier) => class.or(tier),
    }
}

/// An HTTP status and S3 code as an answer.
pub fn from_status(status: u16, code: Option<String>, message: Option<String>) -> Answer {
    // S3's answers to reading an archived object, which another replica may hold readable
    // (API reference: GetObject, InvalidObjectState; CopyObject, ObjectNotInActiveTierError).
    if let (403, Some(archived @ ("InvalidObjectState" | "ObjectNotInActiveTierError"))) =
        (status, code.as_deref())
    {
        return Answer::Archived {
            code: archived.to_string(),
            storage_class: None,
        };
    }
    // HEAD answers carry no body, hence no S3 code: the reason phrase still says what happened.
    let code = code.or_else(|| reason(status).map(str::to_string));
    match status {
        404 => Answer::Missing { code },
        // Only reads pinned with If-Match get it: the replica holds another version.
        412 => Answer::OtherVersion { code },
        408 | 429 | 503 => Answer::Throttled { status, code },
        // A redirect means the replica's region is misconfigured: another replica may serve.
        300..=399 | 500..=599 => Answer::ServerError { status, code },
        _ => Answer::Rejected {
            status,
            code,
            message,
        },
    }
}

fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        301 => "Moved Permanently",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        412 => "Precondition Failed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => return None,
    })
}

/// The deepest cause of an error, which is where the useful words are
/// ("Connection refused", "dns error", "connection closed before message completed").
pub fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = err;
    let mut last = current.to_string();
    while let Some(source) = current.source() {
        current = source;
        let text = current.to_string();
        if !text.is_empty() {
            last = text;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_failover_or_return() {
        assert_eq!(
            from_status(404, None, None),
            Answer::Missing {
                code: Some("Not Found".into())
            }
        );
        assert_eq!(
            from_status(503, None, None).to_string(),
            "503 Service Unavailable"
        );
        assert!(matches!(
            from_status(503, None, None),
            Answer::Throttled { status: 503, .. }
        ));
        assert!(matches!(
            from_status(429, None, None),
            Answer::Throttled { .. }
        ));
        assert!(matches!(
            from_status(500, None, None),
            Answer::ServerError { .. }
        ));
        assert!(matches!(
            from_status(301, None, None),
            Answer::ServerError { .. }
        ));
        assert!(matches!(
            from_status(403, None, None),
            Answer::Rejected { status: 403, .. }
        ));
        assert!(matches!(
            from_status(400, None, None),
            Answer::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            from_status(412, None, None),
            Answer::OtherVersion { .. }
        ));
        assert!(matches!(
            from_status(416, None, None),
            Answer::Rejected { status: 416, .. }
        ));
        for code in ["InvalidObjectState", "ObjectNotInActiveTierError"] {
            assert_eq!(
                from_status(403, Some(code.into()), Some("not valid".into())),
                Answer::Archived {
                    code: code.into(),
                    storage_class: None
                }
            );
            assert!(matches!(
                from_status(400, Some(code.into()), None),
                Answer::Rejected { status: 400, .. }
            ));
        }
        assert!(matches!(
            from_status(403, Some("AccessDenied".into()), None),
            Answer::Rejected { status: 403, .. }
        ));
    }

    #[test]
    fn an_archived_answer_names_its_storage_class_and_tier() {
        use aws_sdk_s3::types::error::InvalidObjectState;
        use aws_sdk_s3::types::{IntelligentTieringAccessTier, StorageClass};
        let state = |class: Option<StorageClass>, tier: Option<IntelligentTieringAccessTier>| {
            GetObjectError::InvalidObjectState(
                InvalidObjectState::builder()
                    .set_storage_class(class)
                    .set_access_tier(tier)
                    .build(),
            )
        };
        assert_eq!(
            archive_of(&state(Some(StorageClass::DeepArchive), None)).as_deref(),
            Some("DEEP_ARCHIVE")
        );
        assert_eq!(
            archive_of(&state(
                Some(StorageClass::IntelligentTiering),
                Some(IntelligentTieringAccessTier::ArchiveAccess)
            ))
            .as_deref(),
            Some("INTELLIGENT_TIERING ARCHIVE_ACCESS")
        );
        assert_eq!(archive_of(&state(None, None)), None);
        assert_eq!(archive_of(&"another error type"), None);
    }
}
