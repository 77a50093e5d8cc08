//! The wire schema read off the message types: every message kind per direction, the wire names
//! of its fields, and the envelope field, so that other descriptions of the protocol (the docs,
//! the JSDoc typedefs; see `tests/spec.rs`) can be held against the types without a second list
//! of names.
//!
//! The names come from serde itself. A derived `Deserialize` hands the deserializer the names
//! it was generated with: an enum its variant names (`deserialize_enum`), a struct variant its
//! field names (`struct_variant`), a struct its field names (`deserialize_struct`). The probes
//! here are deserializers that take those lists and stop, as [`crate::envelope`]'s `kinds`
//! does for the variant names.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde::Serialize;

use crate::{envelope, ClientFrame, ErrorCode, RoomMsg, ServerMsg, SessionFields, SessionMsg};

/// One message kind as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The `type` value.
    pub kind: &'static str,
    /// The wire names of its fields (camelCase), optional ones included; neither `type` nor the
    /// envelope's sequence number.
    pub fields: Vec<String>,
}

/// Every message a client sends: session messages, then room messages.
pub fn client_messages() -> Vec<Message> {
    let mut msgs = messages::<SessionMsg>();
    msgs.extend(messages::<RoomMsg>());
    msgs
}

/// Every message the server sends.
pub fn server_messages() -> Vec<Message> {
    let mut msgs = messages::<ServerMsg>();
    // serde does not say what a `#[serde(flatten)]` field holds (the variant reads it from
    // the leftover keys), so this one link is stated here (the session fields of `joined` and
    // `waiting`); `joined_lists_what_it_encodes` holds it against the encoder.
    for msg in &mut msgs {
        if msg.kind == "joined" || msg.kind == "waiting" {
            msg.fields.extend(struct_fields::<SessionFields>());
        }
    }
    msgs
}

/// The envelope fields of a numbered client message besides `type`: its sequence number.
pub fn client_envelope() -> Vec<String> {
    let frame = ClientFrame {
        cn: Some(1),
        msg: RoomMsg::Leave.into(),
    };
    let mut out = Vec::new();
    frame.encode(&mut out);
    envelope_fields(&out, frame.msg.kind(), &client_messages())
}

/// The envelope fields of a numbered server message besides `type`: its sequence number.
pub fn server_envelope() -> Vec<String> {
    let msg = ServerMsg::error(ErrorCode::BadMessage, String::new(), None);
    let mut out = Vec::new();
    msg.encode(Some(1), &mut out);
    envelope_fields(&out, msg.kind(), &server_messages())
}

/// The keys of the encoded message `json` of kind `kind` that are neither `type` nor fields.
fn envelope_fields(json: &[u8], kind: &str, msgs: &[Message]) -> Vec<String> {
    let fields = msgs
        .iter()
        .find(|m| m.kind == kind)
        .map_or(&[][..], |m| &m.fields);
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).unwrap_or_default();
    object
        .keys()
        .filter(|key| *key != "type" && !fields.contains(key))
        .cloned()
        .collect()
}

fn messages<T: DeserializeOwned + Serialize>() -> Vec<Message> {
    envelope::kinds::<T>()
        .iter()
        .map(|&kind| Message {
            kind,
            fields: variant_fields::<T>(kind),
        })
        .collect()
}

/// The field names of the variant `kind` of the message enum `T`.
///
/// # Panics
///
/// If the variant is of a shape the protocol does not use (a tuple variant, a newtype variant
/// around something other than a struct).
fn variant_fields<T: DeserializeOwned + Serialize>(kind: &'static str) -> Vec<String> {
    let mut required: Vec<&'static str> = Vec::new();
    loop {
        match T::deserialize(Variant {
            kind,
            known: &required,
        }) {
            Err(Found::Fields(fields)) => return fields.iter().map(|f| f.to_string()).collect(),
            // A variant with a flattened field is read as a map and names no fields up front,
            // only the required ones it misses, one at a time. Once given all of those (made-up
            // values), it builds; its encoding then shows the optional ones too.
            Err(Found::Missing(field)) if !required.contains(&field) => required.push(field),
            Ok(msg) => return encoded_fields(&msg, required),
            Err(found) => panic!("cannot read the fields of the `{kind}` message off its type: {found}"),
        }
    }
}

/// `required`, then the other fields that `msg` (a message enum) encodes with.
fn encoded_fields<T: Serialize>(msg: &T, required: Vec<&'static str>) -> Vec<String> {
    let mut fields: Vec<String> = required.into_iter().map(str::to_owned).collect();
    // Externally tagged: `{"<kind>": {<fields>}}`.
    if let Ok(serde_json::Value::Object(outer)) = serde_json::to_value(msg) {
        for inner in outer.values().filter_map(serde_json::Value::as_object) {
            fields.extend(
                inner
                    .keys()
                    .filter(|k| !fields.contains(k))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
    }
    fields
}

/// The field names of the struct `S`.
fn struct_fields<S: DeserializeOwned>() -> Vec<String> {
    match S::deserialize(Content { known: &[] }) {
        Err(Found::Fields(fields)) => fields.iter().map(|f| f.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// What a probe found, carried out of the derived code as its error.
#[derive(Debug)]
enum Found {
    /// The field names of a struct or struct variant (none for a unit variant).
    Fields(&'static [&'static str]),
    /// A required field the derived code asked for and was not given.
    Missing(&'static str),
    /// Anything else the derived code complained about.
    Failed(String),
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fields(fields) => write!(f, "fields {fields:?}"),
            Self::Missing(field) => write!(f, "missing field `{field}`"),
            Self::Failed(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Found {}

impl de::Error for Found {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Self::Failed(msg.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
}

/// Deserializes a message enum as its variant `kind`, stopping at the variant's field names.
struct Variant<'k> {
    kind: &'static str,
    /// For a variant with a flattened field: the fields found so far, to give it.
    known: &'k [&'static str],
}

impl<'de> Deserializer<'de> for Variant<'_> {
    type Error = Found;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
        Err(Found::Failed("a message type is an enum".into()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de> EnumAccess<'de> for Variant<'_> {
    type Error = Found;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Found> {
        let variant = seed.deserialize(StrDeserializer::<Found>::new(self.kind))?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = Found;

    fn unit_variant(self) -> Result<(), Found> {
        Err(Found::Fields(&[]))
    }

    /// A struct wrapped in a variant (its fields go flat on the wire), or a struct variant with
    /// a flattened field, which serde reads this way.
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Found> {
        seed.deserialize(Content { known: self.known })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Found> {
        Err(Found::Failed(
            "tuple variants are not part of the protocol".into(),
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Found> {
        Err(Found::Fields(fields))
    }
}

/// The content of a newtype variant: a struct names its fields; a struct variant with a
/// flattened field reads a map, and gets the fields known so far with made-up values.
struct Content<'k> {
    known: &'k [&'static str],
}

impl<'de> Deserializer<'de> for Content<'_> {
    type Error = Found;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Found> {
        Err(Found::Fields(fields))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_map(MadeUpMap(self.known.iter().copied()))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
        Err(Found::Failed(
            "a newtype variant of the protocol wraps a struct".into(),
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// A map of the given keys, each with a made-up value.
struct MadeUpMap<I>(I);

impl<'de, I: Iterator<Item = &'static str>> MapAccess<'de> for MadeUpMap<I> {
    type Error = Found;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Found> {
        self.0
            .next()
            .map(|key| seed.deserialize(StrDeserializer::<Found>::new(key)))
            .transpose()
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Found> {
        seed.deserialize(MadeUp)
    }
}

/// An empty sequence.
struct NoElements;

impl<'de> SeqAccess<'de> for NoElements {
    type Error = Found;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, _seed: T) -> Result<Option<T::Value>, Found> {
        Ok(None)
    }
}

/// Makes up a value of the type asked for: zero, empty, `None`, a struct of made-up fields, the
/// first variant. Only its shape matters: it lets a variant with a flattened field be built.
struct MadeUp;

macro_rules! made_up {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Found> {
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> Deserializer<'de> for MadeUp {
    type Error = Found;

    made_up! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_option => visit_none(),
        deserialize_unit => visit_unit(),
        deserialize_ignored_any => visit_unit(),
        deserialize_seq => visit_seq(NoElements),
        deserialize_map => visit_map(MadeUpMap(std::iter::empty())),
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_map(MadeUpMap(fields.iter().copied()))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        match variants.first() {
            Some(&first) => visitor.visit_enum(MadeUpVariant(first)),
            None => Err(Found::Failed("an enum without variants".into())),
        }
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
        Err(Found::Failed(
            "cannot make up a value of a self-describing type".into(),
        ))
    }

    serde::forward_to_deserialize_any! { i128 u128 tuple tuple_struct identifier }
}

/// The variant of a made-up enum value.
struct MadeUpVariant(&'static str);

impl<'de> EnumAccess<'de> for MadeUpVariant {
    type Error = Found;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Found> {
        let variant = seed.deserialize(StrDeserializer::<Found>::new(self.0))?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for MadeUpVariant {
    type Error = Found;

    fn unit_variant(self) -> Result<(), Found> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Found> {
        seed.deserialize(MadeUp)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Found> {
        visitor.visit_seq(NoElements)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Found> {
        visitor.visit_map(MadeUpMap(fields.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatEntry, ClientMsg, GroupCall, IceServer, Member, Preconnect, Publish, RoomState};

    fn fields(msgs: &[Message], kind: &str) -> Vec<String> {
        let msg = msgs.iter().find(|m| m.kind == kind);
        msg.unwrap_or_else(|| panic!("no `{kind}`")).fields.clone()
    }

    #[test]
    fn every_kind_is_listed_once_in_declaration_order() {
        let client = client_messages();
        assert!(client.iter().map(|m| m.kind).eq(ClientMsg::kinds()));
        assert!(server_messages()
            .iter()
            .map(|m| m.kind)
            .eq(ServerMsg::kinds().iter().copied()));
    }

    #[test]
    fn fields_are_the_wire_names_of_every_variant_shape() {
        let (client, server) = (client_messages(), server_messages());
        assert_eq!(
            fields(&client, "resume"),
            ["version", "token", "lastSn", "reloaded"]
        );
        assert_eq!(fields(&client, "leave"), Vec::<String>::new());
        // Optional and defaulted fields count.
        assert_eq!(fields(&client, "candidate"), ["callId", "to", "candidate"]);
        assert_eq!(fields(&server, "call_ended"), ["callId", "peer", "reason", "by"]);
        // Newtype variants: the wrapped struct's fields.
        assert_eq!(fields(&server, "group_call"), ["callId", "participants", "media"]);
        assert_eq!(fields(&server, "chat"), ["seq", "from", "name", "text", "at"]);
    }

    #[test]
    fn joined_lists_what_it_encodes() {
        let msg = ServerMsg::Joined {
            session: Some(SessionFields {
                token: "t".into(),
                heartbeat_ms: 1,
                resume_grace_ms: 2,
            }),
            version: 1,
            room: "r".into(),
            you: Member {
                id: 1,
                name: "A".into(),
                host: true,
                publish: Publish::ALL,
            },
            members: vec![],
            ice_servers: vec![IceServer {
                urls: vec![],
                username: None,
                credential: None,
            }],
            ring_timeout_ms: 3,
            preconnect: Preconnect::Relay,
            group: Some(GroupCall {
                call_id: 1,
                participants: vec![1],
                media: crate::GroupMedia::Sfu,
            }),
            chat: vec![ChatEntry {
                seq: 1,
                from: 1,
                name: "A".into(),
                text: "x".into(),
                at: 4,
            }],
            state: RoomState::default(),
            host_key: Some("k".into()),
            in_call: vec![2],
            call: Some(Box::new(crate::CurrentCall {
                call_id: 1,
                peer: 2,
                name: "B".into(),
                outgoing: true,
                active: false,
                since: None,
            })),
        };
        let encoded: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&msg.to_json()).expect("an object");
        let mut encoded: Vec<&str> = encoded
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "type")
            .collect();
        let mut listed = fields(&server_messages(), "joined");
        encoded.sort_unstable();
        listed.sort_unstable();
        assert_eq!(listed, encoded);
    }

    #[test]
    fn the_envelope_is_the_sequence_number() {
        assert_eq!(client_envelope(), ["cn"]);
        assert_eq!(server_envelope(), ["sn"]);
    }
}
