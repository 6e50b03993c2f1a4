//! The six Segment-spec call types and the field names they require.

use serde::{Deserialize, Serialize};

/// A Segment-spec call type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub const ALL: [MessageType; 6] = [
        MessageType::Track,
        MessageType::Identify,
        MessageType::Page,
        MessageType::Screen,
        MessageType::Group,
        MessageType::Alias,
    ];

    /// The name used in the `type` field and in the `/v1/{name}` path.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    /// Parses a `type` value or an endpoint name, including analytics.js's one-letter
    /// short forms (`t`, `i`, `p`, `s`, `g`, `a`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "track" | "t" => MessageType::Track,
            "identify" | "i" => MessageType::Identify,
            "page" | "p" => MessageType::Page,
            "screen" | "s" => MessageType::Screen,
            "group" | "g" => MessageType::Group,
            "alias" | "a" => MessageType::Alias,
            _ => return None,
        })
    }

    /// Fields this call type needs besides an identity (`userId` or `anonymousId`).
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            MessageType::Track => &["event"],
            MessageType::Group => &["groupId"],
            MessageType::Alias => &["previousId"],
            _ => &[],
        }
    }

    /// The object-valued field that carries this call's payload, when it has one.
    pub fn payload_field(self) -> Option<&'static str> {
        match self {
            MessageType::Track | MessageType::Page | MessageType::Screen => Some("properties"),
            MessageType::Identify | MessageType::Group => Some("traits"),
            MessageType::Alias => None,
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_short_forms_round_trip() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::parse(t.as_str()), Some(t));
            let short = &t.as_str()[..1];
            assert_eq!(MessageType::parse(short), Some(t));
        }
        assert_eq!(MessageType::parse("batch"), None);
    }
}
