//! Identity keys: how a customer is named in lookups.

use std::fmt;

/// A user id or an anonymous id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityKey<'a> {
    User(&'a str),
    Anonymous(&'a str),
}

impl<'a> IdentityKey<'a> {
    /// Parses the API's key syntax: `user_id:X`, `anonymous_id:Y`, or a bare user id.
    pub fn parse(key: &'a str) -> Self {
        if let Some(id) = key.strip_prefix("user_id:") {
            IdentityKey::User(id)
        } else if let Some(id) = key.strip_prefix("anonymous_id:") {
            IdentityKey::Anonymous(id)
        } else {
            IdentityKey::User(key)
        }
    }

    /// The key under which the identity is stored: a one-letter namespace and the id.
    pub fn storage_key(&self) -> String {
        let mut key = String::new();
        self.write_storage_key(&mut key);
        key
    }

    /// Writes [`IdentityKey::storage_key`] into `out` in place of what it held, so that a
    /// caller looking up many keys reuses one buffer.
    pub fn write_storage_key(&self, out: &mut String) {
        let (namespace, id) = match self {
            IdentityKey::User(id) => ("u:", id),
            IdentityKey::Anonymous(id) => ("a:", id),
        };
        out.clear();
        out.reserve(namespace.len() + id.len());
        out.push_str(namespace);
        out.push_str(id);
    }

    /// The identity a storage key names, if it is one.
    pub fn from_storage_key(key: &'a str) -> Option<Self> {
        if let Some(id) = key.strip_prefix("u:") {
            Some(IdentityKey::User(id))
        } else {
            key.strip_prefix("a:").map(IdentityKey::Anonymous)
        }
    }

    pub fn id(&self) -> &'a str {
        match self {
            IdentityKey::User(id) | IdentityKey::Anonymous(id) => id,
        }
    }
}

impl fmt::Display for IdentityKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityKey::User(id) => write!(f, "user_id:{id}"),
            IdentityKey::Anonymous(id) => write!(f, "anonymous_id:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(IdentityKey::parse("user_id:42"), IdentityKey::User("42"));
        assert_eq!(
            IdentityKey::parse("anonymous_id:a:b"),
            IdentityKey::Anonymous("a:b")
        );
        assert_eq!(
            IdentityKey::parse("jane@example.com"),
            IdentityKey::User("jane@example.com")
        );
        assert_eq!(IdentityKey::Anonymous("x").storage_key(), "a:x");
        assert_eq!(
            IdentityKey::from_storage_key("u:a:b"),
            Some(IdentityKey::User("a:b"))
        );
        assert_eq!(IdentityKey::from_storage_key("x:1"), None);
    }
}
