//! The payloads the server relays without reading: a session description and an ICE
//! candidate. Each keeps the JSON text the client sent; decoding checks its shape (so nothing
//! malformed reaches the other browser), and encoding writes the text back as it was.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `RTCSessionDescriptionInit` as the client sent it.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Description(Box<RawValue>);

/// `RTCIceCandidateInit` as the client sent it, or `null` for the end of candidates.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Candidate(Box<RawValue>);

/// `RTCSdpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

/// What a description must look like.
#[derive(Deserialize)]
struct DescriptionShape<'a> {
    #[serde(rename = "type")]
    _kind: SdpKind,
    #[serde(default, rename = "sdp", borrow)]
    _sdp: Option<JsonString<'a>>,
}

/// What a candidate must look like (when not `null`).
#[derive(Deserialize)]
struct CandidateShape<'a> {
    #[serde(rename = "candidate", borrow)]
    _candidate: JsonString<'a>,
    #[serde(default, rename = "sdpMid", borrow)]
    _sdp_mid: Option<JsonString<'a>>,
    #[serde(default, rename = "sdpMLineIndex")]
    _sdp_m_line_index: Option<u16>,
    #[serde(default, rename = "usernameFragment", borrow)]
    _username_fragment: Option<JsonString<'a>>,
}

/// Any JSON string, checked without unescaping it: an SDP has an escape on every line, and
/// decoding them all only to throw the result away was most of the cost of relaying it.
struct JsonString<'a>(#[allow(dead_code)] &'a RawValue);

impl<'de: 'a, 'a> Deserialize<'de> for JsonString<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        if !raw.get().starts_with('"') {
            return Err(de::Error::invalid_type(
                de::Unexpected::Other(raw.get()),
                &"a string",
            ));
        }
        Ok(Self(raw))
    }
}

impl Description {
    /// A description of `kind` with `sdp` (for clients and tests; servers relay what they got).
    pub fn new(kind: SdpKind, sdp: &str) -> Self {
        #[derive(Serialize)]
        struct Init<'a> {
            #[serde(rename = "type")]
            kind: SdpKind,
            sdp: &'a str,
        }
        Self(to_raw(&Init { kind, sdp }))
    }

    /// The JSON text, exactly as received.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Its type and SDP, decoded: for the server's own SFU, which reads what it answers.
    pub fn decode(&self) -> Option<(SdpKind, String)> {
        #[derive(Deserialize)]
        struct Init {
            #[serde(rename = "type")]
            kind: SdpKind,
            #[serde(default)]
            sdp: String,
        }
        let init: Init = serde_json::from_str(self.0.get()).ok()?;
        Some((init.kind, init.sdp))
    }
}

impl Candidate {
    /// A candidate line with its media section (for clients and tests).
    pub fn new(candidate: &str, sdp_mid: &str) -> Self {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Init<'a> {
            candidate: &'a str,
            sdp_mid: &'a str,
        }
        Self(to_raw(&Init { candidate, sdp_mid }))
    }

    /// `null`: no more candidates.
    pub fn end() -> Self {
        Self(to_raw(&()))
    }

    /// Whether this is the end-of-candidates marker.
    pub fn is_end(&self) -> bool {
        self.0.get() == "null"
    }

    /// The JSON text, exactly as received.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

/// A missing `candidate` field means the end of candidates, as `null` does.
impl Default for Candidate {
    fn default() -> Self {
        Self::end()
    }
}

fn to_raw<T: Serialize>(value: &T) -> Box<RawValue> {
    // Plain structs of strings serialise infallibly.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        serde_json::from_str::<DescriptionShape>(raw.get()).map_err(de::Error::custom)?;
        Ok(Self(raw))
    }
}

impl<'de> Deserialize<'de> for Candidate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if raw.get() != "null" {
            serde_json::from_str::<CandidateShape>(raw.get()).map_err(de::Error::custom)?;
        }
        Ok(Self(raw))
    }
}

impl PartialEq for Description {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}
impl Eq for Description {}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}
impl Eq for Candidate {}
