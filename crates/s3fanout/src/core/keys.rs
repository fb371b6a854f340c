//! Object keys as they appear in events and in the `x-amz-copy-source` header.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// S3's maximum key length in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Characters left as they are in a copy source: RFC 3986 unreserved, plus `/` which separates
/// the bucket from the key and is kept in the key for readability (S3 accepts both forms).
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A key in an event could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("object key {0:?} is not valid form-URL-encoded UTF-8")]
pub struct KeyDecodeError(pub String);

/// Decodes a key as S3 notifications carry it: form-URL-encoded, where `+` stands for a space.
pub fn decode_event_key(encoded: &str) -> Result<String, KeyDecodeError> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| KeyDecodeError(encoded.to_string()))
}

/// The value of `x-amz-copy-source` for an object: the SDK sends it verbatim, so the key must be
/// percent-encoded here or keys with spaces, `+`, `%`, `?`, `#` or non-ASCII break or copy the
/// wrong object.
pub fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let mut source = format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE));
    if let Some(version) = version_id {
        source.push_str("?versionId=");
        source.extend(utf8_percent_encode(version, COPY_SOURCE));
    }
    source
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_encoding() {
        assert_eq!(
            decode_event_key("red+flower.jpg").unwrap(),
            "red flower.jpg"
        );
        assert_eq!(decode_event_key("a%2Bb").unwrap(), "a+b");
        assert_eq!(decode_event_key("100%25+sure%3F").unwrap(), "100% sure?");
        assert_eq!(decode_event_key("caf%C3%A9%2F%E2%9C%93").unwrap(), "café/✓");
        assert_eq!(decode_event_key("dir/").unwrap(), "dir/");
        assert!(decode_event_key("bad%FF").is_err());
    }

    #[test]
    fn encodes_copy_source() {
        assert_eq!(copy_source("b", "a b+c", None), "b/a%20b%2Bc");
        assert_eq!(
            copy_source("b", "x/100%?#&=", None),
            "b/x/100%25%3F%23%26%3D"
        );
        assert_eq!(
            copy_source("b", "café", Some("v 1")),
            "b/caf%C3%A9?versionId=v%201"
        );
        assert_eq!(copy_source("b", "a-b_c.d~e", None), "b/a-b_c.d~e");
    }

    #[test]
    fn round_trips_through_event_encoding() {
        for key in ["a b", "a+b", "%41", "日本語/ファイル", "q?x#y&z=1", "dir/"] {
            let form: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
            assert_eq!(decode_event_key(&form).unwrap(), key);
        }
    }
}
