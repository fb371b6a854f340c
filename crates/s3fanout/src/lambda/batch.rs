//! S3 Batch Operations "Invoke AWS Lambda function" tasks: each task's object is copied to every
//! target (or to the targets named in the job's `userArguments`), and each task is answered
//! `Succeeded`, `TemporaryFailure` (Batch Operations retries it) or `PermanentFailure`.

use futures::future::join_all;
use serde::Deserialize;
use serde_json::{json, Value};

use super::event::EventError;
use crate::core::change::Change;
use crate::core::config::Target;
use crate::core::keys::decode_event_key;
use crate::core::outcome::{FailureKind, Outcome};
use crate::engine::deadline::Deadline;
use crate::engine::replicator::Replicator;
use crate::store::Store;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEvent {
    invocation_schema_version: String,
    invocation_id: String,
    #[serde(default)]
    job: Job,
    tasks: Vec<Task>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Job {
    #[serde(default)]
    user_arguments: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Task {
    task_id: String,
    s3_key: String,
    /// Schema 1.0.
    #[serde(default)]
    s3_bucket_arn: Option<String>,
    /// Schema 2.0.
    #[serde(default)]
    s3_bucket: Option<String>,
}

/// Whether a payload is a Batch Operations invocation.
pub fn is_batch_event(payload: &Value) -> bool {
    payload.get("invocationSchemaVersion").is_some() && payload.get("tasks").is_some()
}

/// Handles a Batch Operations invocation and returns its response document.
pub async fn handle<S: Store>(
    replicator: &Replicator<S>,
    payload: &Value,
    deadline: &Deadline,
) -> Result<Value, EventError> {
    let event = BatchEvent::deserialize(payload)
        .map_err(|e| EventError(format!("Batch Operations event: {e}")))?;
    if !matches!(event.invocation_schema_version.as_str(), "1.0" | "2.0") {
        return Err(EventError(format!(
            "Batch Operations schema {:?} is not supported (1.0, 2.0)",
            event.invocation_schema_version
        )));
    }
    let targets = match selected_targets(replicator, event.job.user_arguments.as_ref()) {
        Ok(targets) => targets,
        Err(message) => {
            // A bad job definition fails every task permanently, with the reason.
            let results: Vec<Value> = event
                .tasks
                .iter()
                .map(|t| result(&t.task_id, "PermanentFailure", &message))
                .collect();
            return Ok(response(&event, results));
        }
    };
    let results = join_all(
        event
            .tasks
            .iter()
            .map(|task| run_task(replicator, task, &targets, deadline)),
    )
    .await;
    Ok(response(&event, results))
}

fn response(event: &BatchEvent, results: Vec<Value>) -> Value {
    json!({
        "invocationSchemaVersion": event.invocation_schema_version,
        "treatMissingKeysAs": "PermanentFailure",
        "invocationId": event.invocation_id,
        "results": results,
    })
}

fn result(task_id: &str, code: &str, text: &str) -> Value {
    json!({ "taskId": task_id, "resultCode": code, "resultString": text })
}

/// Targets named by `userArguments.targets` (comma-separated), or all of them.
fn selected_targets<'a, S: Store>(
    replicator: &'a Replicator<S>,
    arguments: Option<&Value>,
) -> Result<Vec<&'a Target>, String> {
    let config = replicator.config();
    let Some(names) = arguments
        .and_then(|a| a.get("targets"))
        .and_then(Value::as_str)
    else {
        return Ok(config.targets.iter().collect());
    };
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|name| {
            config.target(name).ok_or_else(|| {
                format!("userArguments.targets names {name:?}, which is not a configured target")
            })
        })
        .collect()
}

async fn run_task<S: Store>(
    replicator: &Replicator<S>,
    task: &Task,
    targets: &[&Target],
    deadline: &Deadline,
) -> Value {
    let bucket = match (&task.s3_bucket, &task.s3_bucket_arn) {
        (Some(bucket), _) => bucket.clone(),
        (None, Some(arn)) => arn.rsplit(':').next().unwrap_or_default().to_string(),
        (None, None) => {
            return result(
                &task.task_id,
                "PermanentFailure",
                "task names no bucket (s3Bucket or s3BucketArn)",
            )
        }
    };
    // Batch Operations passes keys URL-encoded, as the manifest holds them.
    let key = match decode_event_key(&task.s3_key) {
        Ok(key) => key,
        Err(e) => return result(&task.task_id, "PermanentFailure", &e.to_string()),
    };
    let change = Change::created(bucket, key);
    let report = replicator.apply_to(&change, targets, deadline).await;

    let mut done = Vec::new();
    let mut temporary = Vec::new();
    let mut permanent = Vec::new();
    for target in &report.targets {
        let line = format!("{}: {}", target.bucket, target.outcome.name());
        match &target.outcome {
            Outcome::Copied | Outcome::UpToDate => done.push(line),
            Outcome::Failed(failure) if failure.kind == FailureKind::Permanent => {
                permanent.push(format!("{}: {}", target.bucket, failure.message))
            }
            Outcome::Failed(failure) => {
                temporary.push(format!("{}: {}", target.bucket, failure.message))
            }
            Outcome::SourceChanged => temporary.push(format!("{line} (copy again)")),
            Outcome::SourceGone => {
                permanent.push(format!("{line}: the source object does not exist"))
            }
            // Deletes propagate, so the replica of the missing object went too.
            Outcome::Deleted => permanent.push(format!(
                "{line}: the source object does not exist; its replica was removed"
            )),
            Outcome::IsReplica => permanent.push(format!("{line}: the object is a replica")),
            // Retrying cannot succeed before a restore; the report lists what to restore.
            Outcome::AwaitingRestore => permanent.push(format!(
                "{line}: the object is archived; restore it, and its ObjectRestore:Completed event replicates it"
            )),
            _ => done.push(line),
        }
    }
    let code = if !permanent.is_empty() {
        "PermanentFailure"
    } else if !temporary.is_empty() {
        "TemporaryFailure"
    } else {
        "Succeeded"
    };
    let text = permanent
        .into_iter()
        .chain(temporary)
        .chain(done)
        .collect::<Vec<_>>()
        .join("; ");
    result(&task.task_id, code, &text)
}
