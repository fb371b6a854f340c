//! The one place that decides what happens to a replica.
//!
//! [`decide`] is a pure function of what is known of the source and of the replica (from an
//! event, a listing or a HEAD) and of why the engine is looking (an event, a sync, a check). It
//! answers with the next step: read more first, copy (by one request or by parts), delete, or
//! stop with a settled result. The engine runs it in a loop, reading what it asks for, until it
//! settles; replicate, backfill, verify, dry runs, Batch Operations and the command-line tool
//! all go through it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::change::{ChangeKind, Written};
use super::config::Target;
use super::keys::MAX_KEY_BYTES;
use super::object::{may_be_archived, parts_in_etag, Access, Layout, ObjectHead, Tag};
use super::provenance::{self, would_loop};

/// S3's smallest part (but the last).
pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// S3's largest part, and the largest single `CopyObject`.
pub const MAX_PART_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// S3's largest part count.
pub const MAX_PARTS: u64 = 10_000;

/// What is known of the source object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSeen {
    /// Nothing yet.
    Unknown,
    /// A listing showed it: ETag and size, no headers.
    Listed {
        /// ETag without quotes.
        etag: String,
        /// Size in bytes.
        size: u64,
        /// Its storage class (`None`: STANDARD).
        storage_class: Option<String>,
    },
    /// A listing did not show it; only a HEAD can confirm that it is gone.
    NotListed,
    /// A HEAD found no object.
    Absent,
    /// A HEAD read its headers.
    Headed(Box<ObjectHead>),
}

/// What is known of the replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaSeen {
    /// Nothing yet.
    Unknown,
    /// A listing or a HEAD found no object.
    Absent,
    /// A listing showed it.
    Listed {
        /// ETag without quotes.
        etag: String,
        /// Size in bytes.
        size: u64,
    },
    /// A HEAD read its headers, provenance included.
    Headed(Box<ObjectHead>),
    /// A write found an object there (`If-None-Match: *` refused), not read yet.
    Exists,
    /// A plain copy ([`Method::Plain`]) of the announced version landed here, as S3 answered
    /// it: the source's bytes, headers, metadata and tags as S3 read them, no provenance.
    Plain {
        /// The replica's ETag.
        etag: String,
        /// Whether S3 encrypted it with KMS (its ETag is then no digest).
        kms: bool,
    },
}

/// Whether a target bucket announces its changes, so that a deployment replicating from it
/// could copy a replica back: only a replica with provenance is then recognised there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Echo {
    /// It announces nothing, as read from its notification configuration.
    Silent,
    /// It announces changes, or its configuration could not be read.
    #[default]
    Possible,
}

/// Whether objects' website redirect locations can matter to a copy: S3 uses them only in a
/// bucket configured as a website, and a copy with the source's metadata never carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Redirects {
    /// Neither the source nor the target bucket is configured as a website.
    Inert,
    /// One of them is, or its configuration could not be read.
    #[default]
    Possible,
}

/// Why the engine looks at this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An event announced a change: bring the replica to the source's current state.
    Replicate(ChangeKind),
    /// Backfill: bring the replica to the source's state; with `delete`, remove replicas of
    /// objects the source does not have.
    Sync {
        /// Whether replicas the source lacks are deleted.
        delete: bool,
    },
    /// Verify or dry run: find what a sync would do, write nothing.
    Check,
    /// Verify comparing everything: headers, user metadata and tags too, which listings do not
    /// show (two HEADs and two tag reads per object and target).
    Audit,
    /// After a write that read its source earlier: the replica must end as the source is now,
    /// deleted if the source is gone and deletes propagate.
    Recheck(Scope),
}

/// What a re-check after a write compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Content, headers and metadata (after a `CopyObject` that created the replica, or a
    /// delete).
    Content,
    /// Tags as well (after an overwrite, whose tags may be those of when it began, a copy by
    /// parts, whose tags were read when it began, or a tag update).
    ContentAndTags,
}

impl Purpose {
    /// Whether this look only reports (verify, dry run).
    pub fn writes_nothing(self) -> bool {
        matches!(self, Purpose::Check | Purpose::Audit)
    }
}

/// The configuration the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Whether delete events remove replicas.
    pub replicate_deletes: bool,
    /// Single-part sources above this size are copied by parts.
    pub multipart_threshold: u64,
    /// Part size of those copies.
    pub part_size: u64,
    /// How long one invocation may work, when known: no part may need longer.
    pub window: Option<Duration>,
}

/// The copy rate one `UploadPartCopy` is assumed to reach at least (S3 copies server-side;
/// across regions a single request has been seen at tens of MiB/s). Only objects above 48.8 GiB,
/// whose 10,000 parts must each be larger than 5 MiB, are judged by it.
pub const ASSUMED_PART_RATE: u64 = 16 * 1024 * 1024;

/// Everything known when deciding.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The source object.
    pub source: &'a SourceSeen,
    /// The part layout of a multipart source, once read.
    pub layout: Option<Layout>,
    /// The replica.
    pub replica: &'a ReplicaSeen,
    /// The source ETag the change was announced with (by an event or a listing); a source that
    /// no longer has it changed since, and its own announcement covers it.
    pub announced: Option<&'a str>,
    /// The source bucket.
    pub bucket: &'a str,
    /// Every configured source bucket: an object recording one of the others as its source is a
    /// replica made from it, and copying it onward would loop.
    pub sources: &'a BTreeSet<String>,
    /// The source's tags, once read (tag changes only).
    pub source_tags: Option<&'a [Tag]>,
    /// The replica's tags, once read (tag changes only).
    pub replica_tags: Option<&'a [Tag]>,
    /// The size the change was announced with.
    pub announced_size: Option<u64>,
    /// How the announced object was written, when the announcement says.
    pub written: Option<Written>,
    /// Whether the target announces its changes.
    pub echo: Echo,
    /// Whether website redirect locations matter between the source and the target.
    pub redirects: Redirects,
}

/// Something to read before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The source's headers (`HeadObject`).
    SourceHead,
    /// The part size of a multipart source (`HeadObject` with `partNumber=1`).
    SourceLayout,
    /// The replica's headers and provenance (`HeadObject`).
    ReplicaHead,
    /// The source's tags (`GetObjectTagging`).
    SourceTags,
    /// The replica's tags (`GetObjectTagging`).
    ReplicaTags,
}

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One `CopyObject`.
    Single,
    /// One `CopyObject` that takes headers, metadata and tags from the source as S3 reads it
    /// (`MetadataDirective: COPY`), pinned to the announced ETag: nothing is read first, the
    /// source's headers are read beside it, and no provenance is added (the replica's ETag,
    /// equal to the source's, shows it current).
    Plain,
    /// A multipart upload with `UploadPartCopy` parts of this size (the last may be smaller).
    Parts {
        /// Bytes per part.
        part_size: u64,
    },
}

/// What a copy may replace at the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaces {
    /// Nothing: the replica is absent, or not read yet, and the copy is made with
    /// `If-None-Match: *`. S3 refuses it with 412 when an object is there after all.
    Nothing,
    /// Whatever the replica holds (an older or different copy).
    Anything,
}

/// What follows a copy that landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCopy {
    /// Read the source again: content (and tags, per the scope) that changed since it was read
    /// must not be left behind by this copy.
    Recheck(Scope),
    /// Nothing: the copy created the replica where none was.
    Settled,
    /// Decide again from the source as read beside a plain copy: what `COPY` does not carry
    /// (a storage class, a website redirect location) or an ETag that is no digest (KMS)
    /// needs a second write.
    Compare,
}

/// What to do once a copy landed.
///
/// A copy that created the replica (`If-None-Match: *` held) needs no second look when deletes
/// do not propagate: any later write to the replica came from an invocation that found this
/// one there, and the source's content, metadata and tags at the time of the copy are what it
/// holds (`x-amz-copy-source-if-match`, metadata as read for the same ETag, tags copied by S3).
/// A newer version, an in-place metadata change or a tag change each has its own event, whose
/// conditional write either lands after this one or makes this one fail. A delete does not:
/// a copy that began before the source was deleted may land after the delete event found no
/// replica, so with deletes propagating the source is read again. An overwrite is always
/// checked: `CopyObject` keeps the ETag for a change of metadata only, so no condition on the
/// replica's ETag can order two of them.
pub fn after_copy(method: Method, replaces: Replaces, rules: &Rules) -> AfterCopy {
    match (method, replaces) {
        (Method::Plain, _) if !rules.replicate_deletes => AfterCopy::Compare,
        // As any create with deletes propagating: the source is read after it landed.
        (Method::Plain, _) => AfterCopy::Recheck(Scope::Content),
        (Method::Single, Replaces::Nothing) if !rules.replicate_deletes => AfterCopy::Settled,
        (Method::Single, Replaces::Nothing) => AfterCopy::Recheck(Scope::Content),
        // S3 may copy the tags as they were when the copy began: a tag change handled while
        // it ran would be undone by it. A tag event for a replica being created finds it
        // absent and races it with a create of its own, so only overwrites compare tags.
        (Method::Single, Replaces::Anything) => AfterCopy::Recheck(Scope::ContentAndTags),
        // Tags of a copy by parts were read when it began.
        (Method::Parts { .. }, _) => AfterCopy::Recheck(Scope::ContentAndTags),
    }
}

/// A decision that needs no further step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The replica holds the source's current content.
    UpToDate,
    /// The source object is gone; its delete event (or the next sync) covers it.
    SourceGone,
    /// The source no longer has the announced content; the newer content's announcement covers it.
    SourceChanged,
    /// The source object is a replica of another configured source: copying it would loop.
    IsReplica,
    /// A delete event while deletes are not propagated.
    DeletesOff,
    /// Neither the source nor the replica has the object.
    BothAbsent,
    /// The replica has an object the source lacks, and it is kept (sync without delete).
    Kept,
    /// Check: the replica lacks the object.
    Missing,
    /// Check: the replica differs from the source.
    Different,
    /// Check: the replica has an object the source lacks.
    Extraneous,
    /// The source is archived (GLACIER, DEEP_ARCHIVE, an Intelligent-Tiering archive tier)
    /// and cannot be read until restored; its restore's event replicates it.
    AwaitingRestore,
    /// Check: nothing proves the replica holds the source's bytes, nor that it does not (no
    /// full-object checksum on one side, ETags that are not comparable).
    Unverifiable,
}

/// Why a replica cannot be written at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The object needs parts so large (10,000 at most) that one cannot be copied within an
    /// invocation, even at the assumed rate: no number of invocations would finish it.
    NeverFits {
        /// Object size.
        size: u64,
        /// The smallest part size the part limit allows.
        part: u64,
        /// One invocation's time.
        window: Duration,
    },
    /// The target's prefix makes the key longer than S3 allows.
    KeyTooLong {
        /// Bytes in the replica key.
        bytes: usize,
        /// The target's prefix.
        prefix: String,
    },
}

impl Refusal {
    /// For people.
    pub fn describe(&self) -> String {
        match self {
            Refusal::NeverFits { size, part, window } => format!(
                "an object of {size} bytes needs parts of at least {part} bytes (S3 allows 10,000), and one such part needs about {} s at {} MiB/s, longer than the {} s an invocation has: raise the function timeout (900 s at most) or copy it with S3 Batch Operations' own copy",
                part / ASSUMED_PART_RATE,
                ASSUMED_PART_RATE / (1024 * 1024),
                window.as_secs()
            ),
            Refusal::KeyTooLong { bytes, prefix } => format!(
                "replica key is {bytes} bytes with prefix {prefix:?}: above S3's {MAX_KEY_BYTES}-byte limit"
            ),
        }
    }
}

/// The next step for one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read this first, then decide again.
    Read(Need),
    /// Copy the source to the replica.
    Copy(Method, Replaces),
    /// Delete the replica.
    Delete,
    /// Set the source's tags on the replica, which holds the source's content already.
    SetTags,
    /// Nothing (more) to do.
    Done(Settled),
    /// The replica cannot be written; someone must change the configuration.
    Refuse(Refusal),
}

/// Decides the next step for the replica `replica_key` in `target`.
pub fn decide(
    purpose: Purpose,
    facts: &Facts,
    target: &Target,
    replica_key: &str,
    rules: &Rules,
) -> Action {
    if plain_first(purpose, facts, target, replica_key, rules) {
        return Action::Copy(Method::Plain, Replaces::Nothing);
    }
    let (etag, size) = match facts.source {
        SourceSeen::Unknown => return Action::Read(Need::SourceHead),
        SourceSeen::NotListed => return source_not_listed(purpose),
        SourceSeen::Absent => return source_absent(purpose, facts, rules),
        SourceSeen::Listed { etag, size, .. } => (etag.as_str(), *size),
        SourceSeen::Headed(head) => {
            let plain = matches!(facts.replica, ReplicaSeen::Plain { .. });
            if !purpose.writes_nothing() {
                let copied_here =
                    provenance::recorded_bucket(&head.metadata) == Some(target.bucket.as_str());
                let looping = would_loop(&head.metadata, facts.bucket, facts.sources);
                // A plain copy, made before the headers were read, copied what the loop guard
                // or the two-way rule keeps where it is: it was created where nothing was, and
                // goes again.
                if plain && (looping || copied_here) {
                    return Action::Delete;
                }
                if looping {
                    return Action::Done(Settled::IsReplica);
                }
            }
            (head.etag.as_str(), head.size)
        }
    };
    // The source no longer has the announced content. Its newer content's own announcement
    // would copy it, but an earlier attempt of this change may have landed its copy after that
    // one's: so the replica is brought to the source as it is now all the same.
    let changed = matches!(facts.source, SourceSeen::Headed(head)
        if facts.announced.is_some_and(|a| a != head.etag));
    let current = if changed {
        Action::Done(Settled::SourceChanged)
    } else {
        tags_step(purpose, facts)
    };
    // A created object's replica is usually not there yet: the copy itself finds out
    // (`If-None-Match: *`), which saves reading it first.
    let blind = facts.replica == &ReplicaSeen::Unknown
        && purpose == Purpose::Replicate(ChangeKind::Created);
    let drift = match facts.replica {
        ReplicaSeen::Unknown if blind => Settled::Missing,
        ReplicaSeen::Unknown | ReplicaSeen::Exists => return Action::Read(Need::ReplicaHead),
        ReplicaSeen::Absent => Settled::Missing,
        ReplicaSeen::Plain { etag: landed, kms } => {
            if plain_complete(facts.source, landed, *kms, target, facts.redirects) {
                return current;
            }
            // Written again with what `COPY` left out, or with provenance to show it current.
            Settled::Different
        }
        ReplicaSeen::Listed { size: r_size, .. } if *r_size != size => Settled::Different,
        // Equal ETags and sizes prove equal bytes, unless the target encrypts with KMS: its
        // ETags are not digests of the bytes.
        ReplicaSeen::Listed { etag: r_etag, .. }
            if r_etag == etag && target.kms_key_id.is_none() =>
        {
            return current
        }
        // Otherwise only the replica's headers can tell: its checksum, its encryption, its
        // provenance (SSE-KMS, a copy by parts of a single-part source).
        ReplicaSeen::Listed { .. } => return Action::Read(Need::ReplicaHead),
        ReplicaSeen::Headed(replica) => match same_content(facts.source, replica, target, etag) {
            // Provenance naming an older version of the source (the same bytes written again,
            // under KMS a new ETag) is brought to the source as it is: later decisions that
            // can only read the provenance must find the current ETag.
            Proof::Same
                if source_attributes(facts.source, replica, target, facts.redirects)
                    && replica
                        .recorded_etag()
                        .is_none_or(|recorded| recorded == etag) =>
            {
                return current
            }
            Proof::Same | Proof::Different => Settled::Different,
            // Nothing proves the bytes yet: the source's checksum may (the replica has one),
            // and a verify reads it anyway to tell the unprovable from the different.
            Proof::Unknown
                if !matches!(facts.source, SourceSeen::Headed(_))
                    && (replica.checksum.is_some() || purpose.writes_nothing()) =>
            {
                return Action::Read(Need::SourceHead)
            }
            Proof::Unknown
                if !source_attributes(facts.source, replica, target, facts.redirects) =>
            {
                Settled::Different
            }
            // A verify reports what it cannot prove, whatever the provenance claims.
            Proof::Unknown if purpose.writes_nothing() => Settled::Unverifiable,
            // A write trusts the provenance this tool recorded: copying again could prove no
            // more (the source has no full-object checksum to compare).
            Proof::Unknown if replica.recorded_etag() == Some(etag) => return current,
            Proof::Unknown => Settled::Different,
        },
    };
    if let SourceSeen::Headed(head) = facts.source {
        if head.access == Access::Archived {
            return Action::Done(Settled::AwaitingRestore);
        }
    }
    if purpose.writes_nothing() {
        // An archived source is counted apart, which only its HEAD tells.
        let archived = matches!(
            facts.source,
            SourceSeen::Listed { storage_class, .. } if may_be_archived(storage_class.as_deref())
        );
        if archived {
            return Action::Read(Need::SourceHead);
        }
        return Action::Done(drift);
    }
    // Two deployments replicating to each other: an object this target's own deployment
    // copied here is never copied back to it, neither over the origin (which may have changed
    // since) nor where the origin was deleted.
    if let SourceSeen::Headed(head) = facts.source {
        if provenance::recorded_bucket(&head.metadata) == Some(target.bucket.as_str()) {
            return Action::Done(Settled::IsReplica);
        }
    }
    let replica_key_bytes = replica_key.len();
    if replica_key_bytes > MAX_KEY_BYTES {
        return Action::Refuse(Refusal::KeyTooLong {
            bytes: replica_key_bytes,
            prefix: target.prefix.clone(),
        });
    }
    let SourceSeen::Headed(head) = facts.source else {
        // A copy needs the source's headers (content headers, metadata, storage class).
        return Action::Read(Need::SourceHead);
    };
    let smallest_part = part_size(head.size, MIN_PART_BYTES);
    if let Some(window) = rules.window {
        let needs = Duration::from_secs(smallest_part / ASSUMED_PART_RATE);
        if smallest_part > MIN_PART_BYTES && needs > window {
            return Action::Refuse(Refusal::NeverFits {
                size: head.size,
                part: smallest_part,
                window,
            });
        }
    }
    let replaces = match facts.replica {
        ReplicaSeen::Unknown | ReplicaSeen::Absent => Replaces::Nothing,
        _ => Replaces::Anything,
    };
    match copy_method(head, facts.layout, rules, facts.bucket) {
        Some(Method::Single) => Action::Copy(Method::Single, replaces),
        // A copy by parts is too dear to start blind: the replica may be current.
        Some(Method::Parts { .. }) if blind => Action::Read(Need::ReplicaHead),
        Some(method) => Action::Copy(method, Replaces::Anything),
        None => Action::Read(Need::SourceLayout),
    }
}

/// Whether a first copy to this target can be made plain, before anything is read: an
/// object that cannot be a replica of any deployment (so neither the loop guard nor the
/// two-way rule needs its headers first), a single part no larger than one copy by parts
/// would take (so one `CopyObject` keeps its ETag, which shows the replica current without
/// provenance), to a target without a KMS key of its own that announces nothing (no
/// deployment copies back from it, and only provenance would show it a replica there) and is
/// not itself a source.
///
/// An event's object was uploaded by a client. A listed object may have been written any
/// way; with one configured source nothing in it can be a replica of another, its storage
/// class (the listing shows it) is one the copy keeps, and the listing shows no replica.
fn plain_first(
    purpose: Purpose,
    facts: &Facts,
    target: &Target,
    replica_key: &str,
    rules: &Rules,
) -> bool {
    let unread = match (purpose, facts.source, facts.replica) {
        (Purpose::Replicate(ChangeKind::Created), SourceSeen::Unknown, ReplicaSeen::Unknown) => {
            facts.written == Some(Written::Uploaded)
        }
        (Purpose::Sync { .. }, SourceSeen::Listed { storage_class, .. }, ReplicaSeen::Absent) => {
            facts.sources.len() == 1 && class_kept(storage_class.as_deref(), target)
        }
        _ => false,
    };
    unread
        && facts.echo == Echo::Silent
        && !facts.sources.contains(&target.bucket)
        && target.kms_key_id.is_none()
        && replica_key.len() <= MAX_KEY_BYTES
        && facts
            .announced
            .is_some_and(|etag| !etag.is_empty() && parts_in_etag(etag).is_none())
        && facts
            .announced_size
            .is_some_and(|size| size <= rules.multipart_threshold && size <= MAX_PART_BYTES)
}

/// Whether a copy with the source's metadata (`COPY`, which writes the target's storage class
/// or else STANDARD) leaves the replica in the class it should have.
fn class_kept(source_class: Option<&str>, target: &Target) -> bool {
    target.storage_class.is_some() || source_class.is_none_or(|class| class == "STANDARD")
}

/// Whether a plain copy that landed holds everything a copy from the source's headers would
/// have written: the source's ETag as a digest on both sides (no KMS), the storage class the
/// replica should have (the target's, or the default, which is what `COPY` writes without
/// one), and no website redirect location (which `COPY` never carries).
///
/// From a listing alone: the ETag it showed (a KMS source's, no digest, never equals what
/// landed), its storage class, and no bucket that could use a redirect location.
fn plain_complete(
    source: &SourceSeen,
    landed: &str,
    kms: bool,
    target: &Target,
    redirects: Redirects,
) -> bool {
    if kms || target.kms_key_id.is_some() {
        return false;
    }
    match source {
        SourceSeen::Headed(head) => {
            landed == head.etag
                && !head.kms
                && class_kept(head.storage_class.as_deref(), target)
                && (redirects == Redirects::Inert || head.headers.website_redirect.is_none())
        }
        SourceSeen::Listed {
            etag,
            storage_class,
            ..
        } => {
            redirects == Redirects::Inert
                && landed == etag
                && class_kept(storage_class.as_deref(), target)
        }
        _ => false,
    }
}

/// The replica holds the source's content: done, unless the change was to the tags.
fn tags_step(purpose: Purpose, facts: &Facts) -> Action {
    if !matches!(
        purpose,
        Purpose::Replicate(ChangeKind::Tagged)
            | Purpose::Recheck(Scope::ContentAndTags)
            | Purpose::Audit
    ) {
        return Action::Done(Settled::UpToDate);
    }
    match (facts.source_tags, facts.replica_tags) {
        (None, _) => Action::Read(Need::SourceTags),
        (_, None) => Action::Read(Need::ReplicaTags),
        (Some(source), Some(replica)) if same_tags(source, replica) => {
            Action::Done(Settled::UpToDate)
        }
        _ if purpose == Purpose::Audit => Action::Done(Settled::Different),
        _ => Action::SetTags,
    }
}

fn same_tags(a: &[Tag], b: &[Tag]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// What is known of whether a replica holds its source's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    /// Equal full-object checksums, or equal ETags and sizes where ETags are digests.
    Same,
    /// Other sizes, other checksums, or other digests.
    Different,
    /// Nothing read so far proves either.
    Unknown,
}

/// Whether the replica holds the source's bytes, from what is known: full-object checksums of
/// one algorithm decide either way, whatever the ETags and the provenance say (the provenance
/// is a claim any writer can copy, and a replica written behind this tool's back may keep it).
/// ETags are digests of the bytes only where neither side is encrypted with KMS (the target's
/// key, or a HEAD saying so): equal ones then prove equal bytes.
fn same_content(source: &SourceSeen, replica: &ObjectHead, target: &Target, etag: &str) -> Proof {
    let (size, head) = match source {
        SourceSeen::Headed(head) => (head.size, Some(&**head)),
        SourceSeen::Listed { size, .. } => (*size, None),
        _ => return Proof::Unknown,
    };
    if replica.size != size {
        return Proof::Different;
    }
    if let Some(bytes) = head.and_then(|head| same_checksum(head, replica)) {
        return if bytes { Proof::Same } else { Proof::Different };
    }
    let digests = target.kms_key_id.is_none() && !replica.kms && !head.is_some_and(|head| head.kms);
    if digests && replica.etag == etag {
        return Proof::Same;
    }
    // Other ETags prove nothing: other part layouts, other encryption (SSE-C too), servers
    // whose ETags are not digests.
    Proof::Unknown
}

/// Content headers and user metadata equal on both sides, when the source's are known, and
/// the replica not left in the default storage class by a plain copy.
fn source_attributes(
    source: &SourceSeen,
    replica: &ObjectHead,
    target: &Target,
    redirects: Redirects,
) -> bool {
    match source {
        SourceSeen::Headed(head) => {
            same_attributes(head, replica, redirects) && class_written(head, replica, target)
        }
        _ => true,
    }
}

/// False for a replica without provenance in the default storage class where the target or
/// the source names another: a plain copy (which writes the default) whose second write did
/// not happen. A replica a lifecycle rule moved to another class is not judged by it, nor one
/// of a source archived since (a copy of it must wait for its restore; once restored, it is
/// copied into the source's class).
fn class_written(head: &ObjectHead, replica: &ObjectHead, target: &Target) -> bool {
    let archived = head.access == Access::Archived;
    let expected = target
        .storage_class
        .as_deref()
        .or(head.storage_class.as_deref())
        .filter(|class| {
            !(*class == "STANDARD" || archived && matches!(*class, "GLACIER" | "DEEP_ARCHIVE"))
        });
    !(expected.is_some() && replica.storage_class.is_none() && replica.recorded_etag().is_none())
}

/// Whether two objects' full-object checksums prove their bytes equal (`Some(true)`) or
/// different (`Some(false)`); `None` when either has none, or they use other algorithms.
fn same_checksum(source: &ObjectHead, replica: &ObjectHead) -> Option<bool> {
    match (&source.checksum, &replica.checksum) {
        (Some(a), Some(b)) if a.algorithm == b.algorithm => Some(a.value == b.value),
        _ => None,
    }
}

/// Content headers and user metadata (provenance aside) equal on both sides; the website
/// redirect location only where a bucket could use it.
fn same_attributes(source: &ObjectHead, replica: &ObjectHead, redirects: Redirects) -> bool {
    let own = |head: &ObjectHead| {
        head.metadata
            .iter()
            .filter(|(k, _)| !provenance::is_provenance_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let headers = |head: &ObjectHead| {
        let mut headers = head.headers.clone();
        if redirects == Redirects::Inert {
            headers.website_redirect = None;
        }
        headers
    };
    headers(source) == headers(replica) && own(source) == own(replica)
}

fn source_not_listed(purpose: Purpose) -> Action {
    match purpose {
        // Deleting needs the source's own word that the object is gone.
        Purpose::Sync { delete: true } | Purpose::Replicate(_) | Purpose::Recheck(_) => {
            Action::Read(Need::SourceHead)
        }
        Purpose::Sync { delete: false } => Action::Done(Settled::Kept),
        Purpose::Check | Purpose::Audit => Action::Done(Settled::Extraneous),
    }
}

fn source_absent(purpose: Purpose, facts: &Facts, rules: &Rules) -> Action {
    // A created object that is gone was deleted since. Its delete covers the replica, unless an
    // earlier attempt of this change landed a copy after that delete: so it goes all the same
    // when deletes propagate.
    let created = facts.announced.is_some()
        || matches!(
            purpose,
            Purpose::Replicate(ChangeKind::Created | ChangeKind::Tagged)
        );
    let delete = match purpose {
        Purpose::Replicate(_) | Purpose::Recheck(_) => rules.replicate_deletes,
        Purpose::Sync { delete } => delete,
        Purpose::Check | Purpose::Audit if created => return Action::Done(Settled::SourceGone),
        Purpose::Check | Purpose::Audit => return Action::Done(Settled::Extraneous),
    };
    match (delete, facts.replica) {
        (_, ReplicaSeen::Absent) if created => Action::Done(Settled::SourceGone),
        (false, _) if created => Action::Done(Settled::SourceGone),
        (_, ReplicaSeen::Absent) => Action::Done(Settled::BothAbsent),
        (true, _) => Action::Delete,
        (false, _) if matches!(purpose, Purpose::Replicate(_)) => Action::Done(Settled::DeletesOff),
        (false, _) => Action::Done(Settled::Kept),
    }
}

/// How to copy this source, or `None` when its part layout must be read first.
fn copy_method(
    head: &ObjectHead,
    layout: Option<Layout>,
    rules: &Rules,
    bucket: &str,
) -> Option<Method> {
    let provenance = provenance::fits(&head.metadata, bucket, &head.etag);
    let multipart = parts_in_etag(&head.etag).is_some();
    // Up to the threshold one CopyObject does, multipart source or not: keeping a small
    // multipart source's ETag would take a multipart upload of its parts (8 to 10 requests
    // instead of 1), and the provenance shows the replica current just as well (a listing
    // then cannot, so a later sync or verify reads the replica's headers).
    if provenance && head.size <= rules.multipart_threshold {
        return Some(Method::Single);
    }
    if multipart {
        match layout? {
            // Same parts, same ETag: a listing alone then shows the replica is current.
            Layout::Uniform(part_size) => return Some(Method::Parts { part_size }),
            Layout::Irregular => {}
        }
    }
    // Without room for provenance, only an equal ETag shows the replica is current: one
    // CopyObject keeps a single-part source's ETag, where parts would not.
    if !provenance && !multipart && head.size <= MAX_PART_BYTES {
        return Some(Method::Single);
    }
    Some(if head.size > rules.multipart_threshold {
        Method::Parts {
            part_size: part_size(head.size, rules.part_size),
        }
    } else {
        Method::Single
    })
}

/// Part size for an object: the configured size, grown so the object fits in 10,000 parts.
pub fn part_size(object_size: u64, configured: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let needed = object_size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed).clamp(MIN_PART_BYTES, MAX_PART_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::provenance::{SOURCE_BUCKET, SOURCE_ETAG};

    const MIB: u64 = 1024 * 1024;
    const RULES: Rules = Rules {
        replicate_deletes: true,
        multipart_threshold: 64 * MIB,
        part_size: 64 * MIB,
        window: None,
    };
    const CREATED: Purpose = Purpose::Replicate(ChangeKind::Created);
    const REMOVED: Purpose = Purpose::Replicate(ChangeKind::Removed);
    const TAGGED: Purpose = Purpose::Replicate(ChangeKind::Tagged);
    const SYNC: Purpose = Purpose::Sync { delete: false };
    const SYNC_DELETE: Purpose = Purpose::Sync { delete: true };

    fn target() -> Target {
        Target {
            bucket: "rep".into(),
            region: "eu-west-1".into(),
            prefix: String::new(),
            storage_class: None,
            kms_key_id: None,
        }
    }

    fn sources() -> BTreeSet<String> {
        ["src".to_string(), "other-src".to_string()].into()
    }

    fn head(etag: &str, size: u64) -> ObjectHead {
        ObjectHead {
            etag: etag.into(),
            size,
            ..Default::default()
        }
    }

    fn replica_of(etag: &str, size: u64, replica_etag: &str) -> ReplicaSeen {
        let mut h = head(replica_etag, size);
        h.metadata.insert(SOURCE_ETAG.into(), etag.into());
        ReplicaSeen::Headed(Box::new(h))
    }

    fn listed(etag: &str, size: u64) -> SourceSeen {
        SourceSeen::Listed {
            etag: etag.into(),
            size,
            storage_class: None,
        }
    }

    /// An archived source cannot be copied until restored: it waits, without a request, and a
    /// verify tells it apart from a missing replica (a listing shows the storage class, a HEAD
    /// whether it is restored).
    #[test]
    fn archived_sources_wait_for_their_restore() {
        let mut frozen = head("e", 10);
        frozen.storage_class = Some("GLACIER".into());
        frozen.access = Access::Archived;
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(frozen.clone())),
                R::Unknown,
                Some("e")
            ),
            Done(Settled::AwaitingRestore)
        );
        assert_eq!(
            run(
                SYNC,
                S::Headed(Box::new(frozen.clone())),
                R::Absent,
                Some("e")
            ),
            Done(Settled::AwaitingRestore)
        );
        let listed_archived = S::Listed {
            etag: "e".into(),
            size: 10,
            storage_class: Some("GLACIER".into()),
        };
        assert_eq!(
            run(Purpose::Check, listed_archived, R::Absent, Some("e")),
            Read(Need::SourceHead)
        );
        assert_eq!(
            run(
                Purpose::Check,
                S::Headed(Box::new(frozen.clone())),
                R::Absent,
                Some("e")
            ),
            Done(Settled::AwaitingRestore)
        );
        // A replica made before the object was archived is current all the same.
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(frozen)),
                R::Headed(Box::new(head("e", 10))),
                Some("e")
            ),
            Done(Settled::UpToDate)
        );
        let mut thawed = head("e", 10);
        thawed.storage_class = Some("GLACIER".into());
        assert_eq!(
            run(CREATED, S::Headed(Box::new(thawed)), R::Unknown, Some("e")),
            Copy(Method::Single, Replaces::Nothing)
        );
    }

    fn run(
        purpose: Purpose,
        source: SourceSeen,
        replica: ReplicaSeen,
        announced: Option<&str>,
    ) -> Action {
        run_with(purpose, source, None, replica, announced, &RULES)
    }

    fn run_with(
        purpose: Purpose,
        source: SourceSeen,
        layout: Option<Layout>,
        replica: ReplicaSeen,
        announced: Option<&str>,
        rules: &Rules,
    ) -> Action {
        let sources = sources();
        let facts = Facts {
            source: &source,
            layout,
            replica: &replica,
            announced,
            bucket: "src",
            sources: &sources,
            source_tags: None,
            replica_tags: None,
            announced_size: None,
            written: None,
            echo: Echo::Possible,
            redirects: Redirects::Possible,
        };
        decide(purpose, &facts, &target(), "k", rules)
    }

    use Action::*;
    use ReplicaSeen as R;
    use SourceSeen as S;

    /// Only a copy that created its replica, with deletes not propagating, is done without
    /// reading the source again.
    /// Decides a first delivery announced with `etag` and `size`, uploaded by a client.
    fn first_delivery(
        target: &Target,
        etag: &str,
        size: u64,
        written: Option<Written>,
        echo: Echo,
    ) -> Action {
        let sources = sources();
        let facts = Facts {
            source: &S::Unknown,
            layout: None,
            replica: &R::Unknown,
            announced: Some(etag),
            bucket: "src",
            sources: &sources,
            source_tags: None,
            replica_tags: None,
            announced_size: Some(size),
            written,
            echo,
            redirects: Redirects::Possible,
        };
        decide(CREATED, &facts, target, "k", &RULES)
    }

    /// The common case is copied at once, nothing read first; every other case reads the
    /// source's headers first.
    #[test]
    fn a_first_delivery_is_copied_plain_only_when_nothing_else_is_needed() {
        let plain = Copy(Method::Plain, Replaces::Nothing);
        let up = Some(Written::Uploaded);
        let t = target();
        assert_eq!(first_delivery(&t, "e", 10, up, Echo::Silent), plain);
        let mut classed = target();
        classed.storage_class = Some("STANDARD_IA".into());
        assert_eq!(first_delivery(&classed, "e", 10, up, Echo::Silent), plain);
        let head_first = Read(Need::SourceHead);
        // A target that announces its changes: a deployment may copy back from it.
        assert_eq!(first_delivery(&t, "e", 10, up, Echo::Possible), head_first);
        // Written by a copy or a multipart upload: it may be a replica, or have parts.
        for how in [None, Some(Written::Copied), Some(Written::Assembled)] {
            assert_eq!(first_delivery(&t, "e", 10, how, Echo::Silent), head_first);
        }
        // A multipart ETag, a size copied by parts, a KMS key of the target's own.
        assert_eq!(first_delivery(&t, "e-2", 10, up, Echo::Silent), head_first);
        assert_eq!(
            first_delivery(&t, "e", 65 * MIB, up, Echo::Silent),
            head_first
        );
        let mut keyed = target();
        keyed.kms_key_id = Some("key".into());
        assert_eq!(
            first_delivery(&keyed, "e", 10, up, Echo::Silent),
            head_first
        );
        // A target that is itself a source: the loop guard needs provenance there.
        let mut looped = target();
        looped.bucket = "other-src".into();
        assert_eq!(
            first_delivery(&looped, "e", 10, up, Echo::Silent),
            head_first
        );
    }

    /// After a plain copy, the source's headers read beside it tell whether a second write is
    /// needed: a storage class or a website redirect `COPY` does not carry, or ETags that are no
    /// digests (KMS), which only provenance can then tie.
    #[test]
    fn a_plain_copy_is_written_again_only_for_what_copy_left_out() {
        let landed = |etag: &str, kms: bool| R::Plain {
            etag: etag.into(),
            kms,
        };
        let source = |f: &dyn Fn(&mut ObjectHead)| {
            let mut h = head("e", 10);
            f(&mut h);
            S::Headed(Box::new(h))
        };
        assert_eq!(
            run(CREATED, source(&|_| {}), landed("e", false), Some("e")),
            Done(Settled::UpToDate)
        );
        let again = Copy(Method::Single, Replaces::Anything);
        let ia = |h: &mut ObjectHead| h.storage_class = Some("STANDARD_IA".into());
        assert_eq!(
            run(CREATED, source(&ia), landed("e", false), Some("e")),
            again
        );
        let redirect = |h: &mut ObjectHead| h.headers.website_redirect = Some("/x".into());
        assert_eq!(
            run(CREATED, source(&redirect), landed("e", false), Some("e")),
            again
        );
        assert_eq!(
            run(CREATED, source(&|_| {}), landed("k", true), Some("e")),
            again
        );
        let kms = |h: &mut ObjectHead| h.kms = true;
        assert_eq!(
            run(CREATED, source(&kms), landed("e2", false), Some("e")),
            again
        );
        // The source moved on since: brought to it as it is now.
        let newer = |h: &mut ObjectHead| h.etag = "f".into();
        assert_eq!(
            run(CREATED, source(&newer), landed("e", false), Some("e")),
            again
        );
        // Found later by a HEAD, a plain replica without provenance is current by its ETag,
        // unless it sits in the default class where the source names another.
        let mut replica = head("e", 10);
        replica.checksum = None;
        assert_eq!(
            run(
                SYNC,
                source(&|_| {}),
                R::Headed(Box::new(replica.clone())),
                None
            ),
            Done(Settled::UpToDate)
        );
        assert_eq!(
            run(
                SYNC,
                source(&ia),
                R::Headed(Box::new(replica.clone())),
                None
            ),
            again
        );
        // A source in GLACIER: its STANDARD replica without provenance waits while the source
        // is archived (a lifecycle rule may have moved it there after the copy), and is
        // written into GLACIER once a restored copy can be read.
        let glacier = |h: &mut ObjectHead| h.storage_class = Some("GLACIER".into());
        assert_eq!(
            run(
                SYNC,
                source(&glacier),
                R::Headed(Box::new(replica.clone())),
                None
            ),
            again
        );
        let archived = |h: &mut ObjectHead| {
            h.storage_class = Some("GLACIER".into());
            h.access = Access::Archived;
        };
        assert_eq!(
            run(SYNC, source(&archived), R::Headed(Box::new(replica)), None),
            Done(Settled::UpToDate)
        );
    }

    /// A sync's first copy is plain where the listing shows all the copy needs: one source,
    /// a single-part ETag, a class the copy keeps, no replica listed, a target that announces
    /// nothing and has no KMS key of its own.
    #[test]
    fn a_sync_copies_plain_from_the_listing_only_when_nothing_else_is_needed() {
        let plain = Copy(Method::Plain, Replaces::Nothing);
        let listed = |etag: &str, class: Option<&str>| S::Listed {
            etag: etag.into(),
            size: 10,
            storage_class: class.map(str::to_string),
        };
        let decide_with =
            |source: S, replica: R, target: &Target, sources: &BTreeSet<String>, echo: Echo| {
                let etag = match &source {
                    S::Listed { etag, .. } => Some(etag.clone()),
                    _ => None,
                };
                let facts = Facts {
                    source: &source,
                    layout: None,
                    replica: &replica,
                    announced: etag.as_deref(),
                    bucket: "src",
                    sources,
                    source_tags: None,
                    replica_tags: None,
                    announced_size: Some(10),
                    written: None,
                    echo,
                    redirects: Redirects::Possible,
                };
                decide(SYNC, &facts, target, "k", &RULES)
            };
        let one: BTreeSet<String> = ["src".to_string()].into();
        let two: BTreeSet<String> = ["src".to_string(), "other".to_string()].into();
        let t = target();
        let silent = Echo::Silent;
        assert_eq!(
            decide_with(listed("e", None), R::Absent, &t, &one, silent),
            plain
        );
        assert_eq!(
            decide_with(listed("e", Some("STANDARD")), R::Absent, &t, &one, silent),
            plain
        );
        let mut ia = t.clone();
        ia.storage_class = Some("STANDARD_IA".into());
        assert_eq!(
            decide_with(listed("e", Some("GLACIER")), R::Absent, &ia, &one, silent),
            plain,
            "the target names the class"
        );
        // Otherwise the source's headers are read first.
        let head_first = Read(Need::SourceHead);
        for (source, replica, target, sources, echo) in [
            (
                listed("e", Some("STANDARD_IA")),
                R::Absent,
                &t,
                &one,
                silent,
            ),
            (listed("e-2", None), R::Absent, &t, &one, silent),
            (listed("e", None), R::Absent, &t, &two, silent),
            (listed("e", None), R::Absent, &t, &one, Echo::Possible),
        ] {
            assert_eq!(
                decide_with(source.clone(), replica, target, sources, echo),
                head_first,
                "{source:?}"
            );
        }
        let mut kms = t.clone();
        kms.kms_key_id = Some("key".into());
        assert_ne!(
            decide_with(listed("e", None), R::Absent, &kms, &one, silent),
            plain
        );
        let listed_replica = R::Listed {
            etag: "x".into(),
            size: 10,
        };
        assert_ne!(
            decide_with(listed("e", None), listed_replica, &t, &one, silent),
            plain
        );
    }

    /// A plain copy of what the loop guard or the two-way rule keeps where it is goes again
    /// once the headers read beside it show it.
    #[test]
    fn a_plain_copy_of_a_replica_is_undone() {
        let mut own = head("e", 10);
        own.metadata
            .insert(provenance::SOURCE_BUCKET.into(), "rep".into());
        let plain = R::Plain {
            etag: "e".into(),
            kms: false,
        };
        assert_eq!(
            run(SYNC, S::Headed(Box::new(own.clone())), plain, Some("e")),
            Delete
        );
        assert_eq!(
            run(SYNC, S::Headed(Box::new(own)), R::Absent, Some("e")),
            Done(Settled::IsReplica)
        );
    }

    #[test]
    fn only_a_created_replica_skips_the_check_after_the_copy() {
        let off = Rules {
            replicate_deletes: false,
            ..RULES
        };
        let parts = Method::Parts { part_size: 8 * MIB };
        assert_eq!(
            after_copy(Method::Single, Replaces::Nothing, &off),
            AfterCopy::Settled
        );
        assert_eq!(
            after_copy(Method::Single, Replaces::Nothing, &RULES),
            AfterCopy::Recheck(Scope::Content)
        );
        assert_eq!(
            after_copy(Method::Single, Replaces::Anything, &off),
            AfterCopy::Recheck(Scope::ContentAndTags)
        );
        assert_eq!(
            after_copy(parts, Replaces::Anything, &off),
            AfterCopy::Recheck(Scope::ContentAndTags)
        );
    }

    /// A created object is copied without reading its replica first: the copy is made only if
    /// nothing is there (`If-None-Match: *`), and only when S3 finds something is it read.
    #[test]
    fn an_event_reads_the_source_then_copies_unless_the_replica_is_there() {
        assert_eq!(
            run(CREATED, S::Unknown, R::Unknown, Some("e")),
            Read(Need::SourceHead)
        );
        let source = || S::Headed(Box::new(head("e", 10)));
        assert_eq!(
            run(CREATED, source(), R::Unknown, Some("e")),
            Copy(Method::Single, Replaces::Nothing)
        );
        assert_eq!(
            run(CREATED, source(), R::Exists, Some("e")),
            Read(Need::ReplicaHead)
        );
        assert_eq!(
            run(CREATED, source(), R::Absent, Some("e")),
            Copy(Method::Single, Replaces::Nothing)
        );
        // Tag changes concern replicas that exist; copies by parts are too dear to start blind.
        assert_eq!(
            run(TAGGED, source(), R::Unknown, Some("e")),
            Read(Need::ReplicaHead)
        );
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e", 100 * MIB))),
                R::Unknown,
                Some("e")
            ),
            Read(Need::ReplicaHead)
        );
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e", 10))),
                replica_of("old", 10, "x"),
                None
            ),
            Copy(Method::Single, Replaces::Anything)
        );
    }

    #[test]
    fn a_replica_recording_the_source_etag_is_current() {
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e", 10))),
                replica_of("e", 10, "x"),
                Some("e")
            ),
            Done(Settled::UpToDate)
        );
        // Same content without provenance (written by another sync tool) is current too.
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e", 10))),
                R::Headed(Box::new(head("e", 10))),
                None
            ),
            Done(Settled::UpToDate)
        );
    }

    /// The source moved on since the announcement: the replica is still brought to the source
    /// as it is now, since an earlier attempt of this change may have written an older copy.
    #[test]
    fn announced_content_that_changed_or_went_still_converges() {
        let new = || S::Headed(Box::new(head("new", 10)));
        assert_eq!(
            run(CREATED, new(), R::Unknown, Some("old")),
            Copy(Method::Single, Replaces::Nothing)
        );
        assert_eq!(
            run(CREATED, new(), replica_of("old", 10, "x"), Some("old")),
            Copy(Method::Single, Replaces::Anything)
        );
        assert_eq!(
            run(CREATED, new(), replica_of("new", 10, "x"), Some("old")),
            Done(Settled::SourceChanged)
        );
        // Gone: deleted when deletes propagate, left (SourceGone) otherwise or when absent.
        assert_eq!(run(CREATED, S::Absent, R::Unknown, Some("old")), Delete);
        assert_eq!(
            run(CREATED, S::Absent, R::Absent, Some("old")),
            Done(Settled::SourceGone)
        );
        let off = Rules {
            replicate_deletes: false,
            ..RULES
        };
        assert_eq!(
            run_with(CREATED, S::Absent, None, R::Unknown, None, &off),
            Done(Settled::SourceGone)
        );
    }

    /// Two deployments that are each other's targets: what the other one copied here from
    /// this target is left alone, current or not, present or not; the origin is never
    /// rewritten by its own replica's deployment.
    #[test]
    fn copies_from_the_target_are_never_copied_back_to_it() {
        let mut h = head("e", 10);
        h.metadata.insert(SOURCE_ETAG.into(), "e0".into());
        h.metadata.insert(SOURCE_BUCKET.into(), "rep".into());
        for replica in [R::Unknown, R::Absent, replica_of("older", 10, "x")] {
            assert_eq!(
                run(
                    CREATED,
                    S::Headed(Box::new(h.clone())),
                    replica.clone(),
                    Some("e")
                ),
                Done(Settled::IsReplica),
                "{replica:?}"
            );
        }
        // The origin holds the same bytes: current.
        let mut origin = head("e0", 10);
        origin.checksum = Some(crate::core::object::Checksum {
            algorithm: crate::core::object::ChecksumAlgorithm::Crc64Nvme,
            value: "c".into(),
        });
        h.checksum = origin.checksum.clone();
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(h)),
                R::Headed(Box::new(origin)),
                Some("e")
            ),
            Done(Settled::UpToDate)
        );
    }

    #[test]
    fn replicas_of_another_source_are_never_copied_onward() {
        let mut h = head("e", 10);
        h.metadata.insert(SOURCE_ETAG.into(), "e0".into());
        h.metadata.insert(SOURCE_BUCKET.into(), "other-src".into());
        assert_eq!(
            run(CREATED, S::Headed(Box::new(h.clone())), R::Unknown, None),
            Done(Settled::IsReplica)
        );
        assert_eq!(
            run(SYNC, S::Headed(Box::new(h)), R::Absent, Some("e")),
            Done(Settled::IsReplica)
        );
    }

    /// A replica copied back into its own source, or a promoted replica bucket whose objects
    /// name a bucket that is no longer a source, is replicated like any object.
    #[test]
    fn restored_and_promoted_replicas_are_replicated() {
        for recorded in ["src", "old-source-now-gone"] {
            let mut h = head("e", 10);
            h.metadata.insert(SOURCE_ETAG.into(), "e".into());
            h.metadata.insert(SOURCE_BUCKET.into(), recorded.into());
            assert_eq!(
                run(CREATED, S::Headed(Box::new(h)), R::Unknown, None),
                Copy(Method::Single, Replaces::Nothing),
                "recorded source {recorded}"
            );
        }
    }

    /// An in-place copy that fixes `Content-Type` keeps the ETag: the headers decide.
    #[test]
    fn metadata_only_changes_are_copied() {
        let mut source = head("e", 10);
        source.headers.content_type = Some("text/csv".into());
        let mut replica = head("x", 10);
        replica.metadata.insert(SOURCE_ETAG.into(), "e".into());
        replica.headers.content_type = Some("binary/octet-stream".into());
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(source.clone())),
                R::Headed(Box::new(replica.clone())),
                Some("e")
            ),
            Copy(Method::Single, Replaces::Anything)
        );
        replica.headers.content_type = Some("text/csv".into());
        replica.metadata.insert("owner".into(), "old".into());
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(source.clone())),
                R::Headed(Box::new(replica.clone())),
                Some("e")
            ),
            Copy(Method::Single, Replaces::Anything)
        );
        replica.metadata.remove("owner");
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(source)),
                R::Headed(Box::new(replica)),
                Some("e")
            ),
            Done(Settled::UpToDate)
        );
    }

    #[test]
    fn tag_changes_compare_and_set_tags() {
        let tag = |v: &str| Tag {
            key: "team".into(),
            value: v.into(),
        };
        let source = S::Headed(Box::new(head("e", 10)));
        let replica = replica_of("e", 10, "x");
        let tagged = Purpose::Replicate(ChangeKind::Tagged);
        let sources = sources();
        let decide_with = |s: Option<&[Tag]>, r: Option<&[Tag]>| {
            let facts = Facts {
                source: &source,
                layout: None,
                replica: &replica,
                announced: None,
                bucket: "src",
                sources: &sources,
                source_tags: s,
                replica_tags: r,
                announced_size: None,
                written: None,
                echo: Echo::Possible,
                redirects: Redirects::Possible,
            };
            decide(tagged, &facts, &target(), "k", &RULES)
        };
        let (a, b) = ([tag("a")], [tag("b")]);
        assert_eq!(decide_with(None, None), Read(Need::SourceTags));
        assert_eq!(decide_with(Some(&a), None), Read(Need::ReplicaTags));
        assert_eq!(decide_with(Some(&a), Some(&b)), SetTags);
        assert_eq!(decide_with(Some(&a), Some(&a)), Done(Settled::UpToDate));
        // A replica that lacks the content is copied, tags and all.
        assert_eq!(
            run(tagged, S::Headed(Box::new(head("e", 10))), R::Absent, None),
            Copy(Method::Single, Replaces::Nothing)
        );
    }

    #[test]
    fn deletes_follow_the_configuration_and_the_source() {
        assert_eq!(
            run(REMOVED, S::Unknown, R::Unknown, None),
            Read(Need::SourceHead)
        );
        assert_eq!(run(REMOVED, S::Absent, R::Unknown, None), Delete);
        assert_eq!(
            run(REMOVED, S::Absent, R::Absent, None),
            Done(Settled::BothAbsent)
        );
        let off = Rules {
            replicate_deletes: false,
            ..RULES
        };
        assert_eq!(
            run_with(REMOVED, S::Absent, None, R::Unknown, None, &off),
            Done(Settled::DeletesOff)
        );
        // The source has an object again: the replica is brought to it, not deleted.
        assert_eq!(
            run(
                REMOVED,
                S::Headed(Box::new(head("e", 10))),
                replica_of("e", 10, "x"),
                None
            ),
            Done(Settled::UpToDate)
        );
        assert_eq!(
            run(
                REMOVED,
                S::Headed(Box::new(head("e", 10))),
                replica_of("old", 10, "x"),
                None
            ),
            Copy(Method::Single, Replaces::Anything)
        );
    }

    #[test]
    fn listings_decide_without_reads_where_they_can() {
        assert_eq!(
            run(
                SYNC,
                listed("e", 10),
                R::Listed {
                    etag: "e".into(),
                    size: 10
                },
                Some("e")
            ),
            Done(Settled::UpToDate)
        );
        assert_eq!(
            run(
                SYNC,
                listed("e", 10),
                R::Listed {
                    etag: "x".into(),
                    size: 10
                },
                Some("e")
            ),
            Read(Need::ReplicaHead)
        );
        assert_eq!(
            run(
                SYNC,
                listed("e", 10),
                R::Listed {
                    etag: "x".into(),
                    size: 9
                },
                Some("e")
            ),
            Read(Need::SourceHead)
        );
        assert_eq!(
            run(SYNC, listed("e", 10), R::Absent, Some("e")),
            Read(Need::SourceHead)
        );
        assert_eq!(
            run(
                SYNC,
                S::Headed(Box::new(head("e", 10))),
                R::Absent,
                Some("e")
            ),
            Copy(Method::Single, Replaces::Nothing)
        );
    }

    #[test]
    fn checks_report_drift_without_writing() {
        assert_eq!(
            run(Purpose::Check, listed("e", 10), R::Absent, Some("e")),
            Done(Settled::Missing)
        );
        assert_eq!(
            run(
                Purpose::Check,
                listed("e", 10),
                R::Listed {
                    etag: "x".into(),
                    size: 9
                },
                Some("e")
            ),
            Done(Settled::Different)
        );
        // Provenance alone proves no bytes: the source's checksum is read.
        assert_eq!(
            run(
                Purpose::Check,
                listed("e", 10),
                replica_of("e", 10, "x"),
                Some("e")
            ),
            Read(Need::SourceHead)
        );
        assert_eq!(
            run(
                Purpose::Check,
                S::Headed(Box::new(head("e", 10))),
                replica_of("e", 10, "x"),
                Some("e")
            ),
            Done(Settled::Unverifiable)
        );
        let (source, replica) = checksummed("e", "x", "c1", "c1");
        assert_eq!(
            run(Purpose::Check, source, replica, Some("e")),
            Done(Settled::UpToDate)
        );
        let (source, replica) = checksummed("e", "x", "c1", "c2");
        assert_eq!(
            run(Purpose::Check, source, replica, Some("e")),
            Done(Settled::Different)
        );
        assert_eq!(
            run(
                Purpose::Check,
                S::NotListed,
                R::Listed {
                    etag: "x".into(),
                    size: 1
                },
                None
            ),
            Done(Settled::Extraneous)
        );
    }

    /// A full verify reads both sides: headers, metadata or tags that drifted are reported.
    #[test]
    fn a_full_verify_reports_header_and_tag_drift() {
        let mut source = head("e", 10);
        source.headers.content_type = Some("text/csv".into());
        let replica = replica_of("e", 10, "x");
        assert_eq!(
            run(
                Purpose::Audit,
                S::Headed(Box::new(source.clone())),
                replica.clone(),
                Some("e")
            ),
            Done(Settled::Different)
        );
        let mut same = head("x", 10);
        same.metadata.insert(SOURCE_ETAG.into(), "e".into());
        same.headers.content_type = Some("text/csv".into());
        same.checksum = Some(crc("c"));
        source.checksum = Some(crc("c"));
        assert_eq!(
            run(
                Purpose::Audit,
                S::Headed(Box::new(source)),
                R::Headed(Box::new(same)),
                Some("e")
            ),
            Read(Need::SourceTags)
        );
    }

    fn crc(value: &str) -> crate::core::object::Checksum {
        crate::core::object::Checksum {
            algorithm: crate::core::object::ChecksumAlgorithm::Crc64Nvme,
            value: value.into(),
        }
    }

    /// A headed source and a replica recording it, with these checksums.
    fn checksummed(etag: &str, replica_etag: &str, a: &str, b: &str) -> (SourceSeen, ReplicaSeen) {
        let mut source = head(etag, 10);
        source.checksum = Some(crc(a));
        let mut replica = head(replica_etag, 10);
        replica.metadata.insert(SOURCE_ETAG.into(), etag.into());
        replica.checksum = Some(crc(b));
        (S::Headed(Box::new(source)), R::Headed(Box::new(replica)))
    }

    /// Full-object checksums decide where ETags cannot: under KMS an equal ETag proves nothing
    /// (the replica and then the source are read), other checksums make a replica with the
    /// source's ETag and provenance different, and a sync copies it; without a checksum on one
    /// side a verify reports the replica unverifiable while a sync trusts its provenance. Where
    /// ETags are digests, equal ones settle it from the listing.
    #[test]
    fn checksums_decide_where_etags_cannot() {
        let mut kms = target();
        kms.kms_key_id = Some("key".into());
        let listed_replica = R::Listed {
            etag: "e".into(),
            size: 10,
        };
        let decide_at = |purpose, t: &Target, source: SourceSeen, replica: ReplicaSeen| {
            let facts = Facts {
                source: &source,
                layout: None,
                replica: &replica,
                announced: Some("e"),
                bucket: "src",
                sources: &sources(),
                source_tags: None,
                replica_tags: None,
                announced_size: None,
                written: None,
                echo: Echo::Possible,
                redirects: Redirects::Possible,
            };
            decide(purpose, &facts, t, "k", &RULES)
        };
        for purpose in [Purpose::Check, SYNC] {
            assert_eq!(
                decide_at(purpose, &target(), listed("e", 10), listed_replica.clone()),
                Done(Settled::UpToDate),
                "digests: the listing proves it"
            );
            assert_eq!(
                decide_at(purpose, &kms, listed("e", 10), listed_replica.clone()),
                Read(Need::ReplicaHead)
            );
            let mut forged = head("e", 10);
            forged.kms = true;
            forged.metadata.insert(SOURCE_ETAG.into(), "e".into());
            forged.checksum = Some(crc("other"));
            assert_eq!(
                decide_at(
                    purpose,
                    &kms,
                    listed("e", 10),
                    R::Headed(Box::new(forged.clone()))
                ),
                Read(Need::SourceHead)
            );
            let mut source = head("e", 10);
            source.checksum = Some(crc("c"));
            let found = decide_at(
                purpose,
                &kms,
                S::Headed(Box::new(source.clone())),
                R::Headed(Box::new(forged.clone())),
            );
            if purpose == SYNC {
                assert_eq!(found, Copy(Method::Single, Replaces::Anything));
            } else {
                assert_eq!(found, Done(Settled::Different));
            }
            // A source without a checksum.
            let found = decide_at(
                purpose,
                &kms,
                S::Headed(Box::new(head("e", 10))),
                R::Headed(Box::new(forged)),
            );
            if purpose == SYNC {
                assert_eq!(found, Done(Settled::UpToDate), "provenance is trusted");
            } else {
                assert_eq!(found, Done(Settled::Unverifiable));
            }
        }
        // A replica without a checksum and its provenance: a sync needs no source HEAD.
        assert_eq!(
            decide_at(SYNC, &kms, listed("e", 10), replica_of("e", 10, "x")),
            Done(Settled::UpToDate)
        );
    }

    #[test]
    fn replica_only_keys_are_deleted_only_when_asked_and_confirmed() {
        let replica = R::Listed {
            etag: "x".into(),
            size: 1,
        };
        assert_eq!(
            run(SYNC, S::NotListed, replica.clone(), None),
            Done(Settled::Kept)
        );
        assert_eq!(
            run(SYNC_DELETE, S::NotListed, replica.clone(), None),
            Read(Need::SourceHead)
        );
        assert_eq!(run(SYNC_DELETE, S::Absent, replica.clone(), None), Delete);
        assert_eq!(
            run(SYNC, S::Absent, replica.clone(), None),
            Done(Settled::Kept)
        );
        // Written meanwhile: copied if it differs, never deleted.
        assert_eq!(
            run(
                SYNC_DELETE,
                S::Headed(Box::new(head("e", 10))),
                replica,
                None
            ),
            Copy(Method::Single, Replaces::Anything)
        );
    }

    #[test]
    fn copy_method_follows_size_and_source_layout() {
        let big = 100 * MIB;
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e", big))),
                R::Absent,
                None
            ),
            Copy(
                Method::Parts {
                    part_size: 64 * MIB
                },
                Replaces::Anything
            )
        );
        // A small multipart source (the CLI uploads files above 8 MiB in 8 MiB parts): one
        // CopyObject, its layout not even read.
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e-2", 10 * MIB))),
                R::Absent,
                None
            ),
            Copy(Method::Single, Replaces::Nothing)
        );
        // Above the threshold, its own layout, so that the replica keeps its ETag.
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(head("e-13", big))),
                R::Absent,
                None
            ),
            Read(Need::SourceLayout)
        );
        assert_eq!(
            run_with(
                CREATED,
                S::Headed(Box::new(head("e-13", big))),
                Some(Layout::Uniform(8 * MIB)),
                R::Absent,
                None,
                &RULES
            ),
            Copy(Method::Parts { part_size: 8 * MIB }, Replaces::Anything)
        );
        assert_eq!(
            run_with(
                CREATED,
                S::Headed(Box::new(head("e-13", big))),
                Some(Layout::Irregular),
                R::Absent,
                None,
                &RULES
            ),
            Copy(
                Method::Parts {
                    part_size: 64 * MIB
                },
                Replaces::Anything
            )
        );
        // Without room for provenance, a small multipart source keeps its layout too.
        let mut full = head("e-2", 10 * MIB);
        full.metadata.insert("big".into(), "x".repeat(2030));
        assert_eq!(
            run(CREATED, S::Headed(Box::new(full)), R::Absent, None),
            Read(Need::SourceLayout)
        );
    }

    /// Provenance that would pass S3's 2 KB of user metadata is left out; the copy then keeps
    /// the source's ETag, by which the replica is known to be current.
    #[test]
    fn without_room_for_provenance_the_copy_keeps_the_etag() {
        let mut full = head("e", 100 * MIB);
        full.metadata.insert("big".into(), "x".repeat(2030));
        assert_eq!(
            run(CREATED, S::Headed(Box::new(full.clone())), R::Absent, None),
            Copy(Method::Single, Replaces::Nothing)
        );
        let mut replica = head("e", 100 * MIB);
        replica.metadata = full.metadata.clone();
        assert_eq!(
            run(
                CREATED,
                S::Headed(Box::new(full)),
                R::Headed(Box::new(replica)),
                None
            ),
            Done(Settled::UpToDate)
        );
    }

    /// 48 TiB needs 10,000 parts of about 5 GiB; at the assumed rate one takes about 320 s: a
    /// 300 s function can never finish it, a 900 s one can (resuming window after window).
    #[test]
    fn objects_whose_parts_cannot_fit_any_window_are_refused() {
        let huge = S::Headed(Box::new(head("e", 48 * 1024 * 1024 * MIB)));
        let short = Rules {
            window: Some(Duration::from_secs(300)),
            ..RULES
        };
        match run_with(CREATED, huge.clone(), None, R::Absent, None, &short) {
            Refuse(refusal @ Refusal::NeverFits { .. }) => {
                let text = refusal.describe();
                assert!(
                    text.contains("52776558133248 bytes") && text.contains("300 s"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        let long = Rules {
            window: Some(Duration::from_secs(900)),
            ..RULES
        };
        assert!(matches!(
            run_with(CREATED, huge, None, R::Absent, None, &long),
            Copy(Method::Parts { .. }, _)
        ));
        // Below 48.8 GiB parts of 5 MiB do: any window that copies one part will do.
        let tiny = Rules {
            window: Some(Duration::from_millis(20)),
            ..RULES
        };
        assert!(matches!(
            run_with(
                CREATED,
                S::Headed(Box::new(head("e", 40 * 1024 * MIB))),
                None,
                R::Absent,
                None,
                &tiny
            ),
            Copy(Method::Parts { .. }, _)
        ));
    }

    #[test]
    fn keys_too_long_for_the_target_are_refused() {
        let facts_source = S::Headed(Box::new(head("e", 1)));
        let replica = R::Absent;
        let sources = sources();
        let facts = Facts {
            source: &facts_source,
            layout: None,
            replica: &replica,
            announced: None,
            bucket: "src",
            sources: &sources,
            source_tags: None,
            replica_tags: None,
            announced_size: None,
            written: None,
            echo: Echo::Possible,
            redirects: Redirects::Possible,
        };
        let mut long = target();
        long.prefix = "p/".repeat(10);
        let key = "k".repeat(MAX_KEY_BYTES - 5);
        assert!(matches!(
            decide(CREATED, &facts, &long, &format!("{}{key}", long.prefix), &RULES),
            Refuse(Refusal::KeyTooLong { bytes, .. }) if bytes == MAX_KEY_BYTES + 15
        ));
    }

    #[test]
    fn part_sizes_stay_within_s3_limits() {
        assert_eq!(part_size(100 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(part_size(100 * MIB, MIB), MIN_PART_BYTES);
        // 5 TiB in 10,000 parts needs parts of at least 525 MiB (rounded up to whole MiB).
        let five_tib = 5 * 1024 * 1024 * MIB;
        let part = part_size(five_tib, 64 * MIB);
        assert!(five_tib.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part, 525 * MIB);
        assert_eq!(part_size(10 * MIB, 8 * 1024 * 1024 * MIB), MAX_PART_BYTES);
    }
}
