//! What the catalog learns from a message's MIME: its attachments. Parsing is lenient (mail
//! in the wild is often malformed); nothing here decides whether a message is backed up.

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Encoding, MessageParser, MessagePart, MimeHeaders, PartType};

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
            size: attachment_bytes(message.raw_message(), part).len() as u64,
            inline: part.content_disposition().is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"))
                || part.content_id().is_some(),
        })
        .collect()
}

/// An attachment's bytes as they were attached: the transfer encoding undone, but not the
/// charset (a text attachment in UTF-16 or Latin-1 stays so; the parser's text is UTF-8).
/// `raw` is the message the part belongs to.
pub(crate) fn attachment_bytes(raw: &[u8], part: &MessagePart<'_>) -> Vec<u8> {
    match &part.body {
        PartType::Text(_) | PartType::Html(_) => {
            let encoded = raw.get(part.offset_body as usize..part.offset_end as usize).unwrap_or_default();
            let decoded = match part.encoding {
                Encoding::Base64 => base64_decode(encoded),
                Encoding::QuotedPrintable => quoted_printable_decode(encoded),
                Encoding::None => Some(encoded.to_vec()),
            };
            decoded.unwrap_or_else(|| part.contents().to_vec())
        }
        _ => part.contents().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_text_attachment_keeps_its_own_charset() {
        // Given a UTF-16 text file attached in base64 ("hi" = FF FE 68 00 69 00)
        let raw = b"Subject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: text/plain; charset=utf-16\r\n\
Content-Disposition: attachment; filename=notes.txt\r\nContent-Transfer-Encoding: base64\r\n\r\n//5oAGkA\r\n--b--\r\n";

        // When it is read, its bytes are the file's, not the parser's UTF-8 text
        let parsed = MessageParser::default().parse(&raw[..]).expect("mime");
        let part = parsed.attachments().next().expect("attachment");
        assert_eq!(attachment_bytes(parsed.raw_message(), part), [0xff, 0xfe, 0x68, 0, 0x69, 0]);
        assert_eq!(attachments(raw)[0].size, 6);
    }

    #[test]
    fn bytes_that_are_not_mime_have_no_attachments() {
        assert!(attachments(b"").is_empty());
        assert!(attachments(b"\xff\xfe garbage without headers").is_empty());
    }
}
