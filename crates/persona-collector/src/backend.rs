//! Whether a message came from a backend (server-side) SDK.
//!
//! Segment fills `context.ip` from the request for client-side events only: a backend SDK's
//! request comes from the customer's own servers, whose address says nothing about the
//! customer (and would put every such event in `processor.internal_networks` where those
//! list private ranges). RudderStack keeps the request's address apart from `context.ip`
//! for the same reason. Libraries are recognised by the `context.library.name` each SDK
//! sets on every message; RudderStack's server SDKs also send `channel: "server"`.

use crate::shallow::Object;

/// `context.library.name` of the backend SDKs of Segment and RudderStack, as each one's
/// source sets it (RudderStack's Node, Python, Go and Java SDKs reuse Segment's names; the
/// `analytics-node-next`, `AnalyticsNode` and `rudder-sdk-java` names are older releases').
/// Segment's `Analytics-CSharp` is left out: it runs in Unity and Xamarin apps as well.
const BACKEND_LIBRARIES: &[&str] = &[
    "analytics-node",
    "@segment/analytics-node",
    "analytics-node-next",
    "AnalyticsNode",
    "analytics-python",
    "analytics-go",
    "analytics-ruby",
    "analytics-java",
    "analytics-php",
    "Analytics.NET",
    "rudderanalytics-ruby",
    "rudder-analytics-php",
    "RudderAnalytics.NET",
    "rudder-sdk-java",
];

/// Whether `message` (whose merged context is `context`) was sent by a backend SDK. A
/// browser, a mobile SDK, or a caller naming no library counts as client-side.
pub(crate) fn sent_from_backend(message: &Object<'_>, context: &Object<'_>) -> bool {
    if message
        .get("channel")
        .and_then(|c| c.text().ok())
        .is_some_and(|c| c == "server")
    {
        return true;
    }
    let Some(library) = context.get("library").and_then(|l| Object::of_raw(l.raw())) else {
        return false;
    };
    library
        .get("name")
        .and_then(|n| n.text().ok())
        .is_some_and(|name| BACKEND_LIBRARIES.contains(&&*name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(message: &str) -> bool {
        let message = Object::parse(message.as_bytes()).unwrap();
        let context = message
            .get("context")
            .and_then(|c| Object::of_raw(c.raw()))
            .unwrap_or_default();
        sent_from_backend(&message, &context)
    }

    #[test]
    fn backend_sdks_are_told_from_browsers_and_apps() {
        for lib in [
            "analytics-python",
            "@segment/analytics-node",
            "analytics-go",
        ] {
            let m = format!(r#"{{"context":{{"library":{{"name":"{lib}","version":"1"}}}}}}"#);
            assert!(check(&m), "{lib}");
        }
        assert!(check(r#"{"channel":"server","context":{}}"#));
        for lib in [
            "analytics.js",
            "analytics-ios",
            "RudderLabs JavaScript SDK",
            "mine",
        ] {
            let m = format!(r#"{{"context":{{"library":{{"name":"{lib}"}}}}}}"#);
            assert!(!check(&m), "{lib}");
        }
        assert!(!check(r#"{"userId":"u"}"#));
        assert!(!check(
            r#"{"channel":"web","context":{"library":"analytics-go"}}"#
        ));
    }
}
