//! Profile traits: identify's `traits`, deep-merged, last write wins by event time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One top-level trait and the event time of its latest write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trait {
    pub value: Value,
    /// Unix milliseconds of the newest write merged into `value`.
    pub at: i64,
}

/// Traits by name.
pub type Traits = BTreeMap<String, Trait>;

/// Writes trait `name` as of event time `at`.
///
/// Objects are merged key by key, recursively, and where both sides set a leaf the newer
/// write wins; a scalar replaces the old value only if it is not older. So a late identify
/// does not overwrite a newer address, and an address given in two parts keeps both.
pub fn set_trait(traits: &mut Traits, name: &str, value: &Value, at: i64) {
    match traits.get_mut(name) {
        None => {
            traits.insert(
                name.to_owned(),
                Trait {
                    value: value.clone(),
                    at,
                },
            );
        }
        Some(old) => {
            let newer = at >= old.at;
            match (&mut old.value, value) {
                (Value::Object(base), Value::Object(incoming)) => deep_merge(base, incoming, newer),
                (slot, _) if newer => *slot = value.clone(),
                _ => {}
            }
            old.at = old.at.max(at);
        }
    }
}

/// Writes every key of an identify call's `traits` object.
pub fn set_all(traits: &mut Traits, incoming: &Map<String, Value>, at: i64) {
    for (name, value) in incoming {
        set_trait(traits, name, value, at);
    }
}

fn deep_merge(base: &mut Map<String, Value>, incoming: &Map<String, Value>, incoming_wins: bool) {
    for (k, v) in incoming {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(i)) => deep_merge(b, i, incoming_wins),
            (Some(slot), _) => {
                if incoming_wins {
                    *slot = v.clone();
                }
            }
            (None, _) => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn newer_wins_and_objects_merge() {
        let mut t = Traits::new();
        set_all(
            &mut t,
            &obj(json!({"plan": "pro", "address": {"city": "Berlin"}})),
            20,
        );
        set_all(
            &mut t,
            &obj(json!({"plan": "free", "address": {"zip": "10115", "city": "Bonn"}})),
            10,
        );
        assert_eq!(t["plan"].value, json!("pro"), "an older write does not win");
        assert_eq!(
            t["address"].value,
            json!({"city": "Berlin", "zip": "10115"})
        );
        set_all(&mut t, &obj(json!({"plan": "team"})), 30);
        assert_eq!(t["plan"].value, json!("team"));
        assert_eq!(t["plan"].at, 30);
    }
}
