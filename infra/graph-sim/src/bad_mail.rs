//! Mail as it really arrives, not as RFC 5322 describes it: the messages a backup must keep
//! byte for byte although no parser agrees on what they say. Delivered through the admin API
//! (`mime_b64`), they are stored and served (`$value`) exactly as given, as Exchange keeps
//! what its transport accepted.

/// One hostile message: a short name for reports, and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    pub name: &'static str,
    pub mime: Vec<u8>,
}

fn message(name: &'static str, mime: &[u8]) -> BadMessage {
    BadMessage { name, mime: mime.to_vec() }
}

/// The catalogue: each one breaks a different assumption of a mail parser.
pub fn samples() -> Vec<BadMessage> {
    vec![
        // Latin-1 bytes in headers, no RFC 2047 words, no charset anywhere.
        message(
            "8-bit headers",
            b"From: J\xe9r\xf4me <jerome@fabrikam.test>\r\nTo: megan@contoso.test\r\n\
Subject: R\xe9union d\xe9plac\xe9e \xe0 14h\r\nMessage-ID: <eight-bit@fabrikam.test>\r\n\
Date: Mon, 3 Mar 2025 10:00:00 +0100\r\n\r\nLe caf\xe9 est au 2\xe8me \xe9tage.\r\n",
        ),
        // Base64 with characters outside the alphabet and a length that is not a multiple of 4.
        message(
            "broken base64",
            b"From: a@fabrikam.test\r\nTo: megan@contoso.test\r\nSubject: broken base64\r\n\
Message-ID: <broken-b64@fabrikam.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\n\
see attached\r\n--zz\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
JVBERi0xLjQK!!not*base64%%\r\nAAEC\r\n--zz--\r\n",
        ),
        // Declares UTF-8, carries Windows-1252; and a charset nobody knows.
        message(
            "wrong charset",
            b"From: b@fabrikam.test\r\nTo: megan@contoso.test\r\n\
Subject: =?x-unknown-charset?Q?caf=E9?=\r\nMessage-ID: <wrong-charset@fabrikam.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n\x93quoted\x94 \x80 price\r\n",
        ),
        // Not MIME at all: no header block, a multipart without its boundary, binary noise.
        message(
            "not MIME",
            b"\xff\xfe\x00garbage that never had headers\r\nContent-Type: multipart/mixed\r\n\r\n--\r\n\x00\x01\x02",
        ),
        // Nothing at all: an item whose MIME stream is empty.
        message("0 bytes", b""),
    ]
}
