//! Shared pieces of the `make bench` binaries: requests by kind as the fault proxy saw them,
//! medians, knobs from the environment, and the JSON section each binary writes for
//! `tests/bench_report.py` to merge into `target/bench/results.json`.

use std::path::PathBuf;
use std::time::Duration;

use fault_proxy::Seen;
use serde_json::{json, Value};

/// Requests by kind, in the classes S3 prices them by.
///
/// The proxy records the method, the bucket, the query and whether `x-amz-copy-source` was
/// sent, which is enough to tell every request the engine and the sync tools make apart.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Kinds {
    /// HeadObject (and HeadBucket).
    pub head: f64,
    /// GetObject, GetObjectTagging and other reads that are not listings.
    pub get: f64,
    /// ListObjects(V2), ListMultipartUploads, ListParts.
    pub list: f64,
    /// CopyObject.
    pub copy: f64,
    /// UploadPartCopy.
    pub part_copy: f64,
    /// CopyObject made only if the replica does not exist (`If-None-Match: *`), included in
    /// `copy`: on a replica that exists S3 refuses it and nothing is written.
    pub create_only: f64,
    /// PUT without a copy source: PutObject, PutObjectTagging, UploadPart.
    pub put: f64,
    /// POST: CreateMultipartUpload, CompleteMultipartUpload, DeleteObjects.
    pub post: f64,
    /// DELETE: DeleteObject, AbortMultipartUpload (S3 does not charge for them).
    pub delete: f64,
    /// Requests to the source bucket, whatever their kind (included in the counts above).
    pub on_source: f64,
}

impl Kinds {
    /// Counts the requests seen; `source` names the source bucket, for `on_source`.
    pub fn count(seen: &[Seen], source: Option<&str>) -> Self {
        let mut k = Kinds::default();
        for s in seen {
            let query = s.query.as_str();
            match s.method.as_str() {
                "HEAD" => k.head += 1.0,
                "GET" if is_list(query) => k.list += 1.0,
                "GET" => k.get += 1.0,
                "PUT" if s.copy && has_param(query, "partNumber") => k.part_copy += 1.0,
                "PUT" if s.copy => {
                    k.copy += 1.0;
                    if s.create_only {
                        k.create_only += 1.0;
                    }
                }
                "PUT" => k.put += 1.0,
                "POST" => k.post += 1.0,
                "DELETE" => k.delete += 1.0,
                _ => k.get += 1.0,
            }
            if source == Some(s.bucket.as_str()) {
                k.on_source += 1.0;
            }
        }
        k
    }

    /// Reads of objects: HEAD and GET (S3's cheaper request class, with every "other" request).
    pub fn reads(&self) -> f64 {
        self.head + self.get
    }

    /// Server-side copies: CopyObject and UploadPartCopy.
    pub fn copies(&self) -> f64 {
        self.copy + self.part_copy
    }

    /// Everything that is neither a read nor a copy.
    pub fn others(&self) -> f64 {
        self.list + self.put + self.post + self.delete
    }

    /// All requests.
    pub fn total(&self) -> f64 {
        self.reads() + self.copies() + self.others()
    }

    /// Requests S3 charges at the PUT, COPY, POST, LIST rate.
    pub fn class_put(&self) -> f64 {
        self.copies() + self.list + self.put + self.post
    }

    /// Requests S3 charges at the GET rate (HEAD included).
    pub fn class_get(&self) -> f64 {
        self.reads()
    }

    /// Each count divided by `n` (per run, per target, per object).
    pub fn per(&self, n: f64) -> Self {
        let d = |v: f64| v / n;
        Kinds {
            head: d(self.head),
            get: d(self.get),
            list: d(self.list),
            copy: d(self.copy),
            part_copy: d(self.part_copy),
            create_only: d(self.create_only),
            put: d(self.put),
            post: d(self.post),
            delete: d(self.delete),
            on_source: d(self.on_source),
        }
    }

    /// The sum of two counts.
    pub fn add(&self, o: &Kinds) -> Self {
        Kinds {
            head: self.head + o.head,
            get: self.get + o.get,
            list: self.list + o.list,
            copy: self.copy + o.copy,
            part_copy: self.part_copy + o.part_copy,
            create_only: self.create_only + o.create_only,
            put: self.put + o.put,
            post: self.post + o.post,
            delete: self.delete + o.delete,
            on_source: self.on_source + o.on_source,
        }
    }

    /// The counts with the derived totals, as JSON.
    pub fn json(&self) -> Value {
        let r = |v: f64| (v * 1000.0).round() / 1000.0;
        json!({
            "head": r(self.head), "get": r(self.get), "list": r(self.list),
            "copy": r(self.copy), "part_copy": r(self.part_copy),
            "create_only": r(self.create_only), "put": r(self.put),
            "post": r(self.post), "delete": r(self.delete),
            "reads": r(self.reads()), "copies": r(self.copies()), "other": r(self.others()),
            "total": r(self.total()), "on_source": r(self.on_source),
            "class_put_copy_post_list": r(self.class_put()), "class_get_head": r(self.class_get()),
        })
    }

    /// `total (reads / copies / other)`, for the printed tables.
    pub fn short(&self) -> String {
        format!(
            "{} ({} read / {} copy / {} other)",
            num(self.total()),
            num(self.reads()),
            num(self.copies()),
            num(self.others())
        )
    }
}

/// A count without decimals when it is whole.
pub fn num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

fn has_param(query: &str, name: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair.split('=').next() == Some(name))
}

/// A listing: ListObjectsV2 (`list-type=2`), ListObjects v1 (which every client sends with at
/// least one of its parameters), ListMultipartUploads (`uploads`) or ListParts (`uploadId` on
/// a GET). The proxy does not record the key, so a bare GET of an object could not be told
/// from a bare v1 listing; nothing measured here sends either.
pub fn is_list(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        matches!(
            name,
            "list-type"
                | "prefix"
                | "delimiter"
                | "marker"
                | "max-keys"
                | "start-after"
                | "uploads"
                | "uploadId"
        )
    })
}

/// The middle value (the upper one of an even count).
pub fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A number from the environment, or `default` when unset or unreadable.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A comma-separated list of numbers from the environment, or `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// Where the sections go: `$BENCH_DIR`, or `target/bench` in the workspace.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the tests package sits in the workspace")
                .join("target/bench")
        })
}

/// Writes one section of the results (`<dir>/<name>.json`), which the report merges.
pub fn write_section(name: &str, value: &Value) {
    let dir = bench_dir();
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let path = dir.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("JSON");
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(method: &str, query: &str, copy: bool) -> Seen {
        Seen {
            method: method.into(),
            bucket: "b".into(),
            query: query.into(),
            copy,
            create_only: false,
            faulted: false,
            range: None,
            if_match: None,
            amz: Default::default(),
        }
    }

    #[test]
    fn kinds_follow_s3_request_classes() {
        let k = Kinds::count(
            &[
                seen("HEAD", "", false),
                seen("HEAD", "partNumber=1", false),
                seen("GET", "tagging", false),
                seen("GET", "list-type=2&prefix=a", false),
                seen("GET", "uploads&prefix=k", false),
                seen("GET", "uploadId=x", false),
                seen("PUT", "", true),
                seen("PUT", "partNumber=2&uploadId=x", true),
                seen("PUT", "tagging", false),
                seen("POST", "uploads", false),
                seen("DELETE", "uploadId=x", false),
            ],
            Some("b"),
        );
        assert_eq!(
            (
                k.head,
                k.get,
                k.list,
                k.copy,
                k.part_copy,
                k.put,
                k.post,
                k.delete
            ),
            (2.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0)
        );
        assert_eq!(
            (k.reads(), k.copies(), k.others(), k.total()),
            (3.0, 2.0, 6.0, 11.0)
        );
        assert_eq!((k.class_put(), k.class_get()), (7.0, 3.0));
        assert_eq!(k.on_source, 11.0);
    }
}
