//! From the generated protobuf messages of `k8s-pb` to the generated JSON types of `k8s-openapi`.
//!
//! Both crates are generated from upstream: `k8s-pb` from the `generated.proto` files (field
//! numbers and wire types), `k8s-openapi` from the OpenAPI document (JSON names and which fields
//! are required). Their Rust field names agree, so one conversion per message only has to name the
//! fields; the compiler checks every name on both sides, and a field that either crate gains
//! without the other fails the build instead of being dropped. [`convert!`] writes those
//! conversions from a field list; the few messages whose shape differs (Go's embedded structs,
//! which protobuf nests and JSON flattens) use its `..inner { … }` form.
//!
//! Zero values: Go's protobuf marshallers write every non-pointer field, zero or not, while its
//! JSON leaves a zero out under `omitempty`. So a scalar at its zero value becomes `None`, as if
//! the client had sent JSON, unless the field is marked `keep` (a Go pointer, where `false` or `0`
//! is a choice the client made, or a field without `omitempty`). Required fields (plain, not
//! `Option`, in `k8s-openapi`) take their zero value when absent; lists and maps become `None`
//! when empty.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{FieldsV1, MicroTime, Time},
        runtime::RawExtension,
        util::intstr::IntOrString,
    },
    jiff,
};
use k8s_pb::apimachinery::pkg as pb;

use super::{DecodeError, MAGIC, Result};

/// A `k8s-openapi` value read from its protobuf message `P`.
pub(super) trait FromPb<P>: Sized {
    fn from_pb(pb: P) -> Result<Self>;

    /// Whether `pb` is the zero value that Go's JSON leaves out under `omitempty`.
    fn is_zero(_pb: &P) -> bool {
        false
    }
}

/// One struct field, read from the protobuf field of the same name: picks the shape (optional
/// or required, single, list or map) from the two field types.
pub(super) trait FromField<P>: Sized {
    fn from_field(pb: P) -> Result<Self>;
}

/// An optional field: absent, or present at its zero value, is `None`.
impl<P, T: FromPb<P>> FromField<Option<P>> for Option<T> {
    fn from_field(pb: Option<P>) -> Result<Self> {
        pb.filter(|pb| !T::is_zero(pb)).map(T::from_pb).transpose()
    }
}

/// The types a required field can have: those with a zero value to stand for "absent". (A marker
/// of this crate's own, so that the compiler can tell `Option` is never one.)
pub(super) trait Required: Default {}

/// The types [`convert!`] writes a conversion for.
pub(super) trait Converted {}

impl<T: Converted + Default> Required for T {}

/// A required field: absent is its zero value.
impl<P, T: FromPb<P> + Required> FromField<Option<P>> for T {
    fn from_field(pb: Option<P>) -> Result<Self> {
        Ok(pb.map(T::from_pb).transpose()?.unwrap_or_default())
    }
}

impl<P, T: FromPb<P>> FromField<Vec<P>> for Vec<T> {
    fn from_field(pb: Vec<P>) -> Result<Self> {
        pb.into_iter().map(T::from_pb).collect()
    }
}

/// An optional list: one without items is `None`, as Go's `omitempty` writes it.
impl<P, T: FromPb<P>> FromField<Vec<P>> for Option<Vec<T>> {
    fn from_field(pb: Vec<P>) -> Result<Self> {
        if pb.is_empty() {
            return Ok(None);
        }
        Vec::from_field(pb).map(Some)
    }
}

/// An optional map: one without entries is `None`. Entries keep their values, zero or not.
impl<P, T: FromPb<P>> FromField<BTreeMap<String, P>> for Option<BTreeMap<String, T>> {
    fn from_field(pb: BTreeMap<String, P>) -> Result<Self> {
        if pb.is_empty() {
            return Ok(None);
        }
        pb.into_iter()
            .map(|(key, value)| Ok((key, T::from_pb(value)?)))
            .collect::<Result<_>>()
            .map(Some)
    }
}

/// An optional scalar whose zero value is kept (a Go pointer field).
pub(super) fn keep<P, T: FromPb<P>>(pb: Option<P>) -> Result<Option<T>> {
    pb.map(T::from_pb).transpose()
}

/// Writes `FromPb` for `k8s-openapi` types from the `k8s-pb` messages of the same module path.
///
/// ```text
/// convert! { api::core::v1 =>
///     ServicePort { name, node_port: keep, port, target_port }
///     ClientIPConfig as ClientIpConfig { timeout_seconds: keep }
///     Secret { data, type_ <- r#type, … }
///     Volume { name, ..volume_source { config_map, empty_dir, … } }
/// }
/// ```
///
/// Each JSON field is listed once (the compiler refuses a missing one): `name` reads the protobuf
/// field of the same name, `name <- other` one named differently, `: keep` keeps a zero scalar
/// (see [`keep`]), `: none` marks a field the protobuf message does not have. `as` names the
/// protobuf message when its spelling differs, and `..inner { … }` reads fields from the message
/// that protobuf nests in field `inner` where JSON inlines them.
macro_rules! convert {
    ($($module:ident)::+ => $($types:tt)*) => {
        $crate::protobuf::convert::convert!(@types ($($module)::+) $($types)*);
    };
    // One expansion per message, not a recursion through the list: core/v1 has ~150 of them.
    (@types $module:tt $($ty:ident $(as $pb:ident)? { $($fields:tt)* })*) => {
        $($crate::protobuf::convert::convert!(@one $module $ty [$($pb)?] { $($fields)* });)*
    };
    (@one ($($module:tt)*) $ty:ident [$($pb:ident)?] {
        $($field:ident $(<- $src:ident)? $(: $mode:ident)?),* $(,)?
        $(.. $inner:ident { $($ifield:ident $(<- $isrc:ident)? $(: $imode:ident)?),* $(,)? })?
    }) => {
        impl $crate::protobuf::convert::Converted for k8s_openapi::$($module)*::$ty {}

        impl $crate::protobuf::convert::FromPb<
            $crate::protobuf::convert::convert!(@pb [$($module)*] $ty $($pb)?)
        > for k8s_openapi::$($module)*::$ty {
            fn from_pb(
                pb: $crate::protobuf::convert::convert!(@pb [$($module)*] $ty $($pb)?),
            ) -> $crate::protobuf::Result<Self> {
                $(let $inner = pb.$inner.unwrap_or_default();)?
                Ok(Self {
                    $($field: $crate::protobuf::convert::convert!(
                        @value pb, $field $(<- $src)? $(: $mode)?
                    ),)*
                    $($($ifield: $crate::protobuf::convert::convert!(
                        @value $inner, $ifield $(<- $isrc)? $(: $imode)?
                    ),)*)?
                })
            }
        }
    };
    (@pb [$($module:tt)*] $ty:ident) => { k8s_pb::$($module)*::$ty };
    (@pb [$($module:tt)*] $ty:ident $pb:ident) => { k8s_pb::$($module)*::$pb };
    (@value $pb:ident, $field:ident) => {
        $crate::protobuf::convert::FromField::from_field($pb.$field)?
    };
    (@value $pb:ident, $field:ident <- $src:ident) => {
        $crate::protobuf::convert::FromField::from_field($pb.$src)?
    };
    (@value $pb:ident, $field:ident : keep) => {
        $crate::protobuf::convert::keep($pb.$field)?
    };
    (@value $pb:ident, $field:ident <- $src:ident : keep) => {
        $crate::protobuf::convert::keep($pb.$src)?
    };
    (@value $pb:ident, $field:ident : none) => {
        None
    };
}
pub(super) use convert;

// ---- scalars ----

/// Scalars convert to themselves; their zero is the Go zero value.
macro_rules! scalar {
    ($($ty:ty => $zero:expr),* $(,)?) => {$(
        impl FromPb<$ty> for $ty {
            fn from_pb(pb: $ty) -> Result<Self> {
                Ok(pb)
            }

            fn is_zero(pb: &$ty) -> bool {
                let is_zero: fn(&$ty) -> bool = $zero;
                is_zero(pb)
            }
        }
    )*};
}

scalar! {
    String => |s| s.is_empty(),
    i32 => |n| *n == 0,
    i64 => |n| *n == 0,
    f64 => |n| *n == 0.0,
    bool => |b| !b,
}

impl Required for String {}
impl Required for i32 {}
impl Required for i64 {}
impl Required for bool {}
impl Required for ByteString {}
impl Required for IntOrString {}

impl FromPb<Vec<u8>> for ByteString {
    fn from_pb(pb: Vec<u8>) -> Result<Self> {
        Ok(ByteString(pb))
    }

    fn is_zero(pb: &Vec<u8>) -> bool {
        pb.is_empty()
    }
}

// ---- the apimachinery messages that JSON shows as scalars ----

impl FromPb<pb::api::resource::Quantity> for Quantity {
    fn from_pb(pb: pb::api::resource::Quantity) -> Result<Self> {
        Ok(Quantity(pb.string.unwrap_or_else(|| "0".to_owned())))
    }
}

impl FromPb<pb::util::intstr::IntOrString> for IntOrString {
    /// Type 1 is a string; anything else is read as the integer, as Go's unmarshaller does.
    fn from_pb(pb: pb::util::intstr::IntOrString) -> Result<Self> {
        Ok(if pb.r#type == Some(1) {
            IntOrString::String(pb.str_val.unwrap_or_default())
        } else {
            IntOrString::Int(pb.int_val.unwrap_or_default())
        })
    }
}

/// The instant `seconds`/`nanos` since the Unix epoch.
fn timestamp(seconds: Option<i64>, nanos: Option<i32>) -> Result<jiff::Timestamp> {
    let seconds = seconds.unwrap_or_default();
    jiff::Timestamp::new(seconds, nanos.unwrap_or_default())
        .map_err(|e| DecodeError::Invalid(format!("timestamp {seconds}s: {e}")))
}

impl FromPb<pb::apis::meta::v1::Time> for Time {
    fn from_pb(pb: pb::apis::meta::v1::Time) -> Result<Self> {
        timestamp(pb.seconds, pb.nanos).map(Time)
    }

    /// Go writes the zero time as an empty message; its JSON is `null`.
    fn is_zero(pb: &pb::apis::meta::v1::Time) -> bool {
        pb.seconds.is_none() && pb.nanos.is_none()
    }
}

/// A required time (a condition's `lastTransitionTime`): absent is Go's zero time, 0001-01-01,
/// which Go clients read back as the zero value they sent.
impl FromField<Option<pb::apis::meta::v1::Time>> for Time {
    fn from_field(pb: Option<pb::apis::meta::v1::Time>) -> Result<Self> {
        match pb.filter(|pb| !Time::is_zero(pb)) {
            Some(pb) => Time::from_pb(pb),
            None => Ok(Time(GO_ZERO_TIME)),
        }
    }
}

/// Go's zero `time.Time`.
const GO_ZERO_TIME: jiff::Timestamp = jiff::Timestamp::constant(-62_135_596_800, 0);

impl FromPb<pb::apis::meta::v1::MicroTime> for MicroTime {
    fn from_pb(pb: pb::apis::meta::v1::MicroTime) -> Result<Self> {
        timestamp(pb.seconds, pb.nanos).map(MicroTime)
    }

    fn is_zero(pb: &pb::apis::meta::v1::MicroTime) -> bool {
        pb.seconds.is_none() && pb.nanos.is_none()
    }
}

/// Embedded raw bytes: JSON, or a nested Kubernetes protobuf object; empty is `null`.
fn embedded(raw: Option<Vec<u8>>) -> Result<serde_json::Value> {
    let raw = raw.unwrap_or_default();
    if raw.is_empty() {
        Ok(serde_json::Value::Null)
    } else if raw.starts_with(MAGIC) {
        super::decode(&raw)
    } else {
        serde_json::from_slice(&raw)
            .map_err(|e| DecodeError::Invalid(format!("embedded object is not JSON: {e}")))
    }
}

impl FromPb<pb::runtime::RawExtension> for RawExtension {
    fn from_pb(pb: pb::runtime::RawExtension) -> Result<Self> {
        embedded(pb.raw).map(RawExtension)
    }
}

impl FromPb<pb::apis::meta::v1::FieldsV1> for FieldsV1 {
    fn from_pb(pb: pb::apis::meta::v1::FieldsV1) -> Result<Self> {
        embedded(pb.raw).map(FieldsV1)
    }
}

/// `ExtraValue` is a message around a list; JSON shows the list.
impl FromPb<k8s_pb::api::authentication::v1::ExtraValue> for Vec<String> {
    fn from_pb(pb: k8s_pb::api::authentication::v1::ExtraValue) -> Result<Self> {
        Ok(pb.items)
    }
}

impl FromPb<k8s_pb::api::authorization::v1::ExtraValue> for Vec<String> {
    fn from_pb(pb: k8s_pb::api::authorization::v1::ExtraValue) -> Result<Self> {
        Ok(pb.items)
    }
}

impl FromPb<k8s_pb::api::certificates::v1::ExtraValue> for Vec<String> {
    fn from_pb(pb: k8s_pb::api::certificates::v1::ExtraValue) -> Result<Self> {
        Ok(pb.items)
    }
}
