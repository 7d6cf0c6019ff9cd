//! A payload read once into a tree that borrows its strings from the payload's bytes, for
//! [`super::projection`]: a plan reads a few fields of a record, so only what it reads
//! becomes a jq value.

use std::borrow::Cow;

use bytes::Bytes;
use jaq_json::Val;
use serde::de::{Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A JSON value whose strings borrow from the text it was read from where they can.
#[derive(Debug)]
pub(super) enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// A number that is not an integer: jaq keeps its decimal text, which serde does not
    /// give, so a plan that needs one leaves the record to jq.
    Float,
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Members in order, duplicates kept (the last one counts, as in jaq).
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    /// Reads `bytes`; `None` when serde refuses them (jq then reports why).
    #[cfg(test)]
    pub(super) fn parse(bytes: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Reads what `shape` names of `bytes`, skipping the rest (still checked to be JSON);
    /// `None` when serde refuses them (jq then reports why).
    pub(super) fn parse_shaped(bytes: &'a [u8], shape: &Shape) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let json = Shaped(shape).deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(json)
    }

    /// The member `key` of an object.
    pub(super) fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Self::Obj(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The same value as a jq value; `None` for a number jq would keep as decimal text
    /// or an integer beyond the machine's. Strings share `payload`'s bytes when it is
    /// what the tree was read from.
    pub(super) fn to_val(&self, payload: Option<&Bytes>) -> Option<Val> {
        let text = |s: &Cow<'_, str>| match (s, payload) {
            (Cow::Borrowed(s), Some(payload)) => Val::TStr(Box::new(payload.slice_ref(s.as_bytes()))),
            _ => Val::utf8_str(s.to_string()),
        };
        Some(match self {
            Self::Null => Val::Null,
            Self::Bool(b) => Val::Bool(*b),
            Self::Int(i) => Val::from(isize::try_from(*i).ok()?),
            Self::Float => return None,
            Self::Str(s) => text(s),
            Self::Arr(items) => {
                items.iter().map(|j| j.to_val(payload)).collect::<Option<Vec<_>>>()?.into_iter().collect()
            }
            Self::Obj(members) => {
                let mut map = jaq_json::Map::default();
                map.reserve(members.len());
                for (k, v) in members {
                    map.insert(text(k), v.to_val(payload)?);
                }
                Val::obj(map)
            }
        })
    }
}

/// Which parts of a payload a plan reads.
#[derive(Debug, Clone)]
pub(super) enum Shape {
    /// All of it.
    All,
    /// These members of an object, and these parts of each item of an array.
    Parts { members: Vec<(Box<str>, Shape)>, items: Option<Box<Shape>> },
}

impl Shape {
    /// Nothing yet.
    pub(super) fn nothing() -> Self {
        Self::Parts { members: Vec::new(), items: None }
    }

    /// Marks all of it read.
    pub(super) fn all(&mut self) {
        *self = Self::All;
    }

    /// The part for member `key`, or `None` when all of it is read already.
    pub(super) fn member(&mut self, key: &str) -> Option<&mut Shape> {
        let Self::Parts { members, .. } = self else { return None };
        let i = match members.iter().position(|(k, _)| &**k == key) {
            Some(i) => i,
            None => {
                members.push((key.into(), Self::nothing()));
                members.len() - 1
            }
        };
        Some(&mut members[i].1)
    }

    /// The part to read of member `key`, if any.
    fn find(&self, key: &str) -> Option<&Shape> {
        match self {
            Self::All => Some(&ALL),
            // Linear: `==` compares lengths first, so most members cost no byte compare
            // (an ordered search compares bytes at each step, and costs more here).
            Self::Parts { members, .. } => members.iter().find(|(k, _)| **k == *key).map(|(_, s)| s),
        }
    }

    /// The part for each item, or `None` when all of it is read already.
    pub(super) fn items(&mut self) -> Option<&mut Shape> {
        let Self::Parts { items, .. } = self else { return None };
        Some(items.get_or_insert_with(|| Box::new(Self::nothing())))
    }
}

static ALL: Shape = Shape::All;

/// An integer beyond `i64` is a big integer in jaq: left to jq, as a float is.
fn int(u: u64) -> Json<'static> {
    i64::try_from(u).map_or(Json::Float, Json::Int)
}

/// Reads a value as `Shape` says.
struct Shaped<'s>(&'s Shape);

impl<'de> DeserializeSeed<'de> for Shaped<'_> {
    type Value = Json<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(ShapedVisitor(self.0))
    }
}

struct ShapedVisitor<'s>(&'s Shape);

impl<'de> Visitor<'de> for ShapedVisitor<'_> {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Json<'de>, E> {
        Ok(int(u))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float)
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let shape = match self.0 {
            Shape::All => &ALL,
            Shape::Parts { items: Some(shape), .. } => shape,
            Shape::Parts { items: None, .. } => {
                // No item is read: only their number matters, so keep them as null.
                let mut items = Vec::new();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    items.push(Json::Null);
                }
                return Ok(Json::Arr(items));
            }
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Shaped(shape))? {
            items.push(item);
        }
        Ok(Json::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::with_capacity(match self.0 {
            Shape::All => 8,
            Shape::Parts { members, .. } => members.len(),
        });
        while let Some(Key(k)) = map.next_key()? {
            match self.0.find(&k) {
                Some(shape) => members.push((k, map.next_value_seed(Shaped(shape))?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Json::Obj(members))
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Shaped(&ALL).deserialize(deserializer)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}
