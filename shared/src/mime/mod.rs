//! What the catalog learns from a message's MIME: its attachments. Parsing is lenient (mail
//! in the wild is often malformed); nothing here decides whether a message is backed up.

use mail_parser::{MessageParser, MimeHeaders};

mod rebuild;
pub use rebuild::{INLINE_ATTACHMENT_MAX, Part, Rebuilt, rebuild};

use crate::model::AttachmentMeta;

/// The attachments a MIME message declares, inline parts (images with a Content-ID) included;
/// empty when the bytes do not parse as MIME.
pub fn attachments(mime: &[u8]) -> Vec<AttachmentMeta> {
    let Some(message) = MessageParser::default().parse(mime) else { return Vec::new() };
    message
        .attachments()
        .map(|part| AttachmentMeta {
            name: part.attachment_name().unwrap_or_default().to_owned(),
            content_type: part
                .content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("octet-stream")).to_lowercase()),
            size: part.contents().len() as u64,
            inline: part.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"))
                || part.content_id().is_some(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::attachments;

    #[test]
    fn attachments_are_listed_with_decoded_names_sizes_and_inline_parts() {
        // Given a multipart message with an encoded file name and an inline image
        let raw = b"From: =?UTF-8?B?w4lsb2TDqWU=?= <e@x.test>\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"=?UTF-8?Q?r=C3=A9sum=C3=A9.pdf?=\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b1\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n\
Content-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n--b1--\r\n";

        // When its attachments are listed
        let found = attachments(raw);

        // Then both parts are there, decoded, with their byte sizes
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].name.as_str(), found[0].size, found[0].inline), ("résumé.pdf", 4, false));
        assert_eq!(found[0].content_type.as_deref(), Some("application/pdf"));
        assert_eq!((found[1].size, found[1].inline), (3, true));
    }

    #[test]
    fn bytes_that_are_not_mime_have_no_attachments() {
        assert!(attachments(b"").is_empty());
        assert!(attachments(b"\xff\xfe garbage without headers").is_empty());
    }
}
