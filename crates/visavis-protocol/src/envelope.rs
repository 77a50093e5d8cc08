//! The envelope: how a message enum becomes one flat JSON object — its sequence number (`sn`
//! or `cn`), `"type": <kind>`, then the variant's fields — and back, in one pass each way.
//!
//! The message enums derive serde's default (externally tagged) representation, so serde
//! names every kind once, from the variant names. This module adapts that representation to
//! the flat wire shape instead of serde's `#[serde(tag = "type")]`, which buffers every message
//! into an intermediate tree (so a relayed payload could not stay raw JSON) and cannot carry
//! the sequence number. Decoding reads the object once: `type` and the sequence number are
//! taken out, every other field is kept as a borrowed raw slice and handed to the variant's
//! derived `Deserialize`. Encoding writes straight into the caller's buffer.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use serde::de::value::{MapDeserializer, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, VariantAccess, Visitor};
use serde::ser::{
    self, Impossible, Serialize, SerializeMap, SerializeStruct, SerializeStructVariant, Serializer,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ErrorCode;

/// Why a text frame could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    /// The `type` field, when the frame had a readable one.
    pub request: Option<String>,
}

/// One JSON object split into its envelope and the rest, borrowing from the text.
#[derive(Debug)]
pub(crate) struct Parts<'a> {
    pub kind: String,
    pub seq: Option<u64>,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Parts<'a> {
    /// Splits `text`, a JSON object, taking out `type` and the sequence field `seq_name`.
    pub fn parse(text: &'a str, seq_name: &'static str) -> Result<Self, DecodeError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let parts = PartsSeed { seq_name }
            .deserialize(&mut de)
            .and_then(|p| de.end().map(|()| p));
        match parts {
            Ok(Some(parts)) => Ok(parts),
            Ok(None) => Err(bad(None, "expected a JSON object with a string \"type\"".into())),
            Err(err) => Err(bad(
                None,
                format!("expected a JSON object with a string \"type\": {err}"),
            )),
        }
    }

    /// The message of type `T` these parts make up.
    pub fn into_msg<T: Deserialize<'a>>(self) -> Result<T, DecodeError> {
        let unknown = Cell::new(false);
        let tagged = Tagged {
            kind: &self.kind,
            fields: self.fields,
            unknown: &unknown,
        };
        T::deserialize(tagged).map_err(|err| {
            if unknown.get() {
                DecodeError {
                    code: ErrorCode::UnknownType,
                    message: format!("unknown message type {:?}", self.kind),
                    request: Some(self.kind.clone()),
                }
            } else {
                let message = format!("invalid {:?} message: {err}", self.kind);
                bad(Some(self.kind.clone()), message)
            }
        })
    }
}

fn bad(request: Option<String>, message: String) -> DecodeError {
    DecodeError {
        code: ErrorCode::BadMessage,
        message,
        request,
    }
}

struct PartsSeed {
    seq_name: &'static str,
}

impl<'de> DeserializeSeed<'de> for PartsSeed {
    /// `None` for an object without `type`.
    type Value = Option<Parts<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PartsSeed {
    type Value = Option<Parts<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut kind, mut seq, mut fields) = (None, None, Vec::new());
        while let Some(Key(key)) = map.next_key()? {
            if key == "type" {
                if kind.replace(map.next_value::<String>()?).is_some() {
                    return Err(de::Error::duplicate_field("type"));
                }
            } else if key == self.seq_name {
                if seq.replace(map.next_value::<u64>()?).is_some() {
                    return Err(de::Error::duplicate_field(self.seq_name));
                }
            } else {
                fields.push((key, map.next_value::<&RawValue>()?));
            }
        }
        Ok(kind.map(|kind| Parts { kind, seq, fields }))
    }
}

/// An object key, borrowed unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The message as serde's externally tagged enum access: the variant is `type`, its content
/// the other fields.
struct Tagged<'a, 'k> {
    kind: &'k str,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Set when `kind` names no variant of the enum asked for.
    unknown: &'k Cell<bool>,
}

impl<'de> Deserializer<'de> for Tagged<'de, '_> {
    type Error = serde_json::Error;

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if !variants.contains(&self.kind) {
            self.unknown.set(true);
            return Err(de::Error::unknown_variant(self.kind, variants));
        }
        visitor.visit_enum(self)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("a message decodes only into an enum"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de, 'k> EnumAccess<'de> for Tagged<'de, 'k> {
    type Error = serde_json::Error;
    type Variant = Fields<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Fields<'de>), Self::Error> {
        let variant = seed.deserialize(StrDeserializer::<serde_json::Error>::new(self.kind))?;
        Ok((variant, Fields(self.fields)))
    }
}

/// A variant's fields, as a map of raw JSON values.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Fields<'de> {
    fn into_map(
        self,
    ) -> MapDeserializer<'de, std::vec::IntoIter<(Cow<'de, str>, &'de RawValue)>, serde_json::Error> {
        MapDeserializer::new(self.0.into_iter())
    }
}

impl<'de> VariantAccess<'de> for Fields<'de> {
    type Error = serde_json::Error;

    /// Fields beside `type` are ignored, as unknown fields are everywhere.
    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Self::Error> {
        seed.deserialize(self.into_map())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("tuple variants are not part of the protocol"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.into_map().deserialize_any(visitor)
    }
}

/// Every kind (`type` value) of the message enum `T`, in declaration order.
pub(crate) fn kinds<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("probe")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<M: fmt::Display>(_msg: M) -> Self {
            Found(&[])
        }
    }
    impl<'de> Deserializer<'de> for Probe {
        type Error = Found;
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Found> {
            Err(Found(variants))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }
    match T::deserialize(Probe) {
        Err(Found(variants)) => variants,
        Ok(_) => &[],
    }
}

/// Writes `msg` as one flat JSON object into `out`: `seq` first when given, then `type`, then
/// the variant's fields.
pub(crate) fn encode<T: Serialize>(msg: &T, seq: Option<(&'static str, u64)>, out: &mut Vec<u8>) {
    let mut ser = serde_json::Serializer::new(out);
    // The message types have no maps with non-string keys and no foreign types, and a Vec
    // cannot fail to grow short of aborting: writing them cannot fail.
    let _ = msg.serialize(Top {
        ser: Some(&mut ser),
        seq,
    });
}

/// The kind (`type` value) of `msg`, a message enum, without serialising its fields.
pub(crate) fn kind_of<T: Serialize>(msg: &T) -> &'static str {
    msg.serialize(Top::<Vec<u8>> { ser: None, seq: None })
        .unwrap_or("")
}

type Compound<'s, W> = serde_json::ser::Compound<'s, W, serde_json::ser::CompactFormatter>;

/// Serialises the top-level enum: a variant opens the object and writes the envelope. Without
/// `ser` it only reports the variant name (what [`kind_of`] needs). Returns the variant name.
struct Top<'s, W: std::io::Write> {
    ser: Option<&'s mut serde_json::Serializer<W>>,
    seq: Option<(&'static str, u64)>,
}

impl<'s, W: std::io::Write> Top<'s, W> {
    fn open(self, kind: &'static str, len: usize) -> Result<Option<Compound<'s, W>>, serde_json::Error> {
        let Some(ser) = self.ser else {
            return Ok(None);
        };
        let mut map = ser.serialize_map(Some(len + 2))?;
        if let Some((name, n)) = self.seq {
            map.serialize_entry(name, &n)?;
        }
        map.serialize_entry("type", kind)?;
        Ok(Some(map))
    }
}

fn not_a_message<T>() -> Result<T, serde_json::Error> {
    Err(ser::Error::custom("a message is an enum variant"))
}

/// Refuses every serializer method that is not about enums or structs.
macro_rules! refuse_values {
    () => {
        fn serialize_bool(self, _: bool) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_i8(self, _: i8) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_i16(self, _: i16) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_i32(self, _: i32) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_i64(self, _: i64) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_u8(self, _: u8) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_u16(self, _: u16) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_u32(self, _: u32) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_u64(self, _: u64) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_f32(self, _: f32) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_f64(self, _: f64) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_char(self, _: char) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_str(self, _: &str) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_none(self) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_unit(self) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_newtype_struct<T: ?Sized + Serialize>(
            self,
            _: &'static str,
            _: &T,
        ) -> Result<Self::Ok, Self::Error> {
            not_a_message()
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
            not_a_message()
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
            not_a_message()
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Self::Error> {
            not_a_message()
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Self::Error> {
            not_a_message()
        }
    };
}

impl<'s, W: std::io::Write> Serializer for Top<'s, W> {
    type Ok = &'static str;
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<&'static str, serde_json::Error>;
    type SerializeTuple = Impossible<&'static str, serde_json::Error>;
    type SerializeTupleStruct = Impossible<&'static str, serde_json::Error>;
    type SerializeTupleVariant = Impossible<&'static str, serde_json::Error>;
    type SerializeMap = Impossible<&'static str, serde_json::Error>;
    type SerializeStruct = Impossible<&'static str, serde_json::Error>;
    type SerializeStructVariant = VariantFields<'s, W>;

    refuse_values!();

    fn serialize_unit_struct(self, _: &'static str) -> Result<Self::Ok, Self::Error> {
        not_a_message()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        not_a_message()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Self::Error> {
        not_a_message()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
    ) -> Result<Self::Ok, Self::Error> {
        if let Some(map) = self.open(kind, 0)? {
            SerializeMap::end(map)?;
        }
        Ok(kind)
    }

    /// A variant wrapping a struct: the struct's fields follow the envelope in the same object.
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
        value: &T,
    ) -> Result<Self::Ok, Self::Error> {
        if let Some(mut map) = self.open(kind, 0)? {
            value.serialize(Inline(&mut map))?;
            SerializeMap::end(map)?;
        }
        Ok(kind)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Ok(VariantFields {
            map: self.open(kind, len)?,
            kind,
        })
    }
}

/// The fields of a struct variant, written into the open object.
struct VariantFields<'s, W: std::io::Write> {
    map: Option<Compound<'s, W>>,
    kind: &'static str,
}

impl<W: std::io::Write> SerializeStructVariant for VariantFields<'_, W> {
    type Ok = &'static str;
    type Error = serde_json::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        match &mut self.map {
            Some(map) => map.serialize_entry(key, value),
            None => Ok(()),
        }
    }

    fn end(self) -> Result<Self::Ok, Self::Error> {
        if let Some(map) = self.map {
            SerializeMap::end(map)?;
        }
        Ok(self.kind)
    }
}

/// Serialises a struct (or a map, as serde's `flatten` produces) into an object that is
/// already open, without braces of its own.
struct Inline<'m, 's, W: std::io::Write>(&'m mut Compound<'s, W>);

impl<'m, 's, W: std::io::Write> Serializer for Inline<'m, 's, W> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    refuse_values!();

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Self::Error> {
        Ok(())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Self::Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Self::Error> {
        Ok(self)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Self::Error> {
        not_a_message()
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        not_a_message()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        not_a_message()
    }
}

impl<W: std::io::Write> SerializeStruct for Inline<'_, '_, W> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        self.0.serialize_entry(key, value)
    }

    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl<W: std::io::Write> SerializeMap for Inline<'_, '_, W> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Self::Error> {
        self.0.serialize_key(key)
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Self::Error> {
        self.0.serialize_value(value)
    }

    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}
