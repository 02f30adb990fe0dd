//! The serde side of reading an event: visitors that borrow from the text and leave values
//! unparsed. A member repeated in an object counts with its last value, as in a `Value` map.

use std::{borrow::Cow, collections::HashMap, fmt, marker::PhantomData};

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Any JSON value; what `T` takes from its members when it is an object. A member repeated
/// counts with its last value (so each later one overwrites), as in a `Value` map.
pub(super) struct IfObject<T>(pub(super) Option<T>);

/// What one object's members give.
trait FromMembers<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

/// The envelope's `id` and `type`, unparsed, and its `data` if that is an object.
#[derive(Default)]
pub(super) struct Envelope<'a> {
    pub(super) id: Option<&'a RawValue>,
    pub(super) event_type: Option<&'a RawValue>,
    pub(super) data: Option<Data<'a>>,
}

/// `data`'s `object`, if that is an object.
#[derive(Default)]
pub(super) struct Data<'a> {
    pub(super) object: Option<Resource<'a>>,
}

/// What the headers need of `data.object`.
#[derive(Default)]
pub(super) struct Resource<'a> {
    pub(super) external_id: Option<&'a RawValue>,
    pub(super) id: Option<&'a RawValue>,
}

impl<'de> FromMembers<'de> for Envelope<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "id" => envelope.id = Some(map.next_value()?),
                "type" => envelope.event_type = Some(map.next_value()?),
                "data" => envelope.data = map.next_value::<IfObject<Data>>()?.0,
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(envelope)
    }
}

impl<'de> FromMembers<'de> for Data<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut data = Data::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "object" => data.object = map.next_value::<IfObject<Resource>>()?.0,
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(data)
    }
}

impl<'de> FromMembers<'de> for Resource<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut resource = Resource::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "external_id" => resource.external_id = Some(map.next_value()?),
                "id" => resource.id = Some(map.next_value()?),
                _ => drop(map.next_value::<IgnoredAny>()?),
            }
        }
        Ok(resource)
    }
}

impl<'de, T: FromMembers<'de>> Deserialize<'de> for IfObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IfObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: FromMembers<'de>> Visitor<'de> for IfObjectVisitor<T> {
            type Value = IfObject<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::read(map).map(|members| IfObject(Some(members)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IfObject(None))
            }

            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }

            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }

            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }

            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }

            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(IfObject(None))
            }
        }

        deserializer.deserialize_any(IfObjectVisitor(PhantomData))
    }
}

/// A JSON object's members in order, each value left as its text.
pub(super) struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// `value`'s members, if it is an object.
    pub(super) fn of(value: &'a RawValue) -> Option<Self> {
        if !value.get().starts_with('{') {
            return None;
        }
        serde_json::from_str(value.get()).ok()
    }

    /// The last value of `key`: what a JSON object with `key` repeated means to serde_json
    /// (and to most receivers).
    pub(super) fn last(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Each key once, at its first place, with its last value (a `Value` map's reading).
    pub(super) fn unique(&self) -> Vec<(Cow<'a, str>, &'a RawValue)> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        let mut unique: Vec<(Cow<'a, str>, &'a RawValue)> = Vec::with_capacity(self.0.len());
        for (key, value) in &self.0 {
            match seen.get(key.as_ref()) {
                Some(&at) => unique[at].1 = value,
                None => {
                    seen.insert(key, unique.len());
                    unique.push((key.clone(), value));
                }
            }
        }
        unique
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor<'a>(PhantomData<&'a ()>);

        impl<'de> Visitor<'de> for MembersVisitor<'de> {
            type Value = Members<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::new();
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }

        deserializer.deserialize_map(MembersVisitor(PhantomData))
    }
}

/// An object key, borrowed from the text unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);

        impl<'de> Visitor<'de> for KeyVisitor<'de> {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_string())))
            }
        }

        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}
