//! The `segment.entered` and `segment.exited` events: one per change of a customer's
//! membership of a rule segment or of a model's cluster, into the outbox and the history.

use chrono::{DateTime, Utc};
use persona_store::{ChangeSet, ProfileId, SegmentId};
use serde::Serialize;

use super::Reason;
use super::models::LiveModel;

/// What the customer entered or left.
pub(super) enum Member<'a> {
    /// A rule segment: its id and name.
    Rule(SegmentId, &'a str),
    /// A cluster of an active model.
    Cluster(&'a LiveModel, u32),
}

#[derive(Serialize)]
struct MembershipEvent<'a> {
    event: &'static str,
    /// `rule` or `cluster`.
    kind: &'static str,
    profile_id: ProfileId,
    user_id: Option<&'a str>,
    /// The rule segment's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_id: Option<SegmentId>,
    /// The segment's name; for a cluster, "<model name>: <cluster name>".
    segment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<u32>,
    at: DateTime<Utc>,
    reason: Reason,
}

/// The exit of a member from a rule segment being deleted, as stored in the outbox and the
/// profile's history (the store writes it as it deletes the segment's members).
pub fn deleted_exit(
    profile: (ProfileId, Option<&str>),
    segment: (SegmentId, &str),
    at: DateTime<Utc>,
) -> Vec<u8> {
    let mut changes = ChangeSet::default();
    record(
        &mut changes,
        profile,
        Member::Rule(segment.0, segment.1),
        false,
        at,
        Reason::Deleted,
    );
    changes.outbox.pop().expect("recorded").1
}

/// Records one entry or exit: the event, and for a rule segment the membership index.
pub(super) fn record(
    changes: &mut ChangeSet,
    profile: (ProfileId, Option<&str>),
    member: Member<'_>,
    entered: bool,
    at: DateTime<Utc>,
    reason: Reason,
) {
    let label;
    let mut event = MembershipEvent {
        event: if entered {
            "segment.entered"
        } else {
            "segment.exited"
        },
        kind: "rule",
        profile_id: profile.0,
        user_id: profile.1,
        segment_id: None,
        segment: "",
        model_id: None,
        model: None,
        model_version: None,
        cluster: None,
        at,
        reason,
    };
    match member {
        Member::Rule(id, name) => {
            changes.memberships.push((id, profile.0, entered));
            event.segment_id = Some(id);
            event.segment = name;
        }
        Member::Cluster(model, cluster) => {
            label = model.label(cluster);
            event.kind = "cluster";
            event.segment = &label;
            event.model_id = Some(model.id);
            event.model = Some(&model.name);
            event.model_version = Some(model.version);
            event.cluster = Some(cluster);
        }
    }
    changes
        .outbox
        .push((profile.0, serde_json::to_vec(&event).expect("serialises")));
}
