//! The `segment.entered` and `segment.exited` events: one per change of a customer's
//! membership of a rule segment or of a model's cluster, into the outbox and the history.

use chrono::{DateTime, Utc};
use persona_core::profile::Profile;
use persona_store::{ChangeSet, ProfileId, SegmentId};
use serde::Serialize;

use super::Reason;
use super::models::LiveModel;

/// Whom a membership event concerns: the profile, and the id the profile API finds it by.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub id: ProfileId,
    pub user_id: Option<&'a str>,
    /// Named in the event only for a customer who never signed up.
    pub anonymous_id: Option<&'a str>,
}

impl<'a> Who<'a> {
    pub fn of(id: ProfileId, profile: &'a Profile) -> Self {
        Who {
            id,
            user_id: profile.user_id.as_deref(),
            anonymous_id: profile.anonymous_ids.first().map(String::as_str),
        }
    }
}

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
    /// For a customer with no user id: `GET /v1/profiles/anonymous_id:{id}` finds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_id: Option<&'a str>,
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
pub fn deleted_exit(who: Who<'_>, segment: (SegmentId, &str), at: DateTime<Utc>) -> Vec<u8> {
    let mut changes = ChangeSet::default();
    record(
        &mut changes,
        who,
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
    who: Who<'_>,
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
        profile_id: who.id,
        user_id: who.user_id,
        anonymous_id: who.anonymous_id.filter(|_| who.user_id.is_none()),
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
            changes.memberships.push((id, who.id, entered));
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
        .push((who.id, serde_json::to_vec(&event).expect("serialises")));
}
