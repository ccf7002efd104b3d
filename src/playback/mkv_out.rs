//! The MKV documents playback bodies are made of: one per fragment (via
//! [`FragmentDocument`]) and tag-only documents that report an error in-band.

use bytes::Bytes;
use reel_storage::{Fragment, StoreError};

use reel_media::mkv::{FragmentDocument, MkvError, SimpleTag, ebml, id};

/// KVS GetMedia error id: the fragment could not be found (or read).
pub(crate) const ERROR_FRAGMENT_NOT_FOUND: u32 = 4000;
/// KVS GetMedia error id: internal error.
pub(crate) const ERROR_INTERNAL: u32 = 5000;

/// A stored fragment as one self-contained document with `tags` before its cluster and
/// `trailing_tags` after it.
pub(crate) fn fragment_document(
    f: &Fragment,
    tags: &[SimpleTag],
    trailing_tags: &[SimpleTag],
) -> Result<Bytes, MkvError> {
    let doc = FragmentDocument { header: &f.header, start_ms: f.info.producer_ts_ms, tags, trailing_tags };
    doc.compose(f.chunks.iter().map(|c| c.data.as_ref())).map(Bytes::from)
}

/// A document with no tracks or clusters, only `tags`: how an error reaches a client that
/// is already reading a 200 body.
pub(crate) fn tags_document(tags: &[SimpleTag]) -> Bytes {
    let mut out = Vec::with_capacity(256);
    ebml::write_master(&mut out, id::EBML, |o| {
        ebml::write_uint(o, id::EBML_VERSION, 1);
        ebml::write_uint(o, id::EBML_READ_VERSION, 1);
        ebml::write_uint(o, id::EBML_MAX_ID_LENGTH, 4);
        ebml::write_uint(o, id::EBML_MAX_SIZE_LENGTH, 8);
        ebml::write_str(o, id::DOC_TYPE, "matroska");
        ebml::write_uint(o, id::DOC_TYPE_VERSION, 4);
        ebml::write_uint(o, id::DOC_TYPE_READ_VERSION, 2);
    });
    ebml::write_id(&mut out, id::SEGMENT);
    out.extend_from_slice(&ebml::UNKNOWN_SIZE);
    ebml::write_master(&mut out, id::TAGS, |o| {
        ebml::write_master(o, id::TAG, |o| {
            ebml::write_master(o, id::TARGETS, |_| {});
            for t in tags {
                ebml::write_master(o, id::SIMPLE_TAG, |o| {
                    ebml::write_str(o, id::TAG_NAME, &t.name);
                    ebml::write_str(o, id::TAG_STRING, &t.value);
                });
            }
        });
    });
    Bytes::from(out)
}

/// The KVS error id for a store failure on one fragment.
pub(crate) fn error_id(e: &StoreError) -> u32 {
    match e {
        StoreError::FragmentNotFound { .. } | StoreError::InvalidArgument(_) => ERROR_FRAGMENT_NOT_FOUND,
        _ => ERROR_INTERNAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reel_media::mkv::{parse_document, tag};

    #[test]
    fn tags_document_parses_back() {
        let tags = [SimpleTag::new(tag::ERROR_CODE, "FRAGMENT_NOT_FOUND"), SimpleTag::new(tag::ERROR_ID, "4000")];
        let doc = tags_document(&tags);
        let parsed = parse_document(&doc).expect("parse");
        assert_eq!(parsed.tags, tags);
        assert!(parsed.clusters.is_empty());
    }
}
