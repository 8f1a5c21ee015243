//! OneDrive for Business / SharePoint naming rules, enforced on every write
//! path (admin mutations included) so the backup's restore code meets the same
//! rejections it would meet in Graph: invalid characters, reserved names,
//! leading/trailing spaces, 255-char names, 400-char paths and case-insensitive
//! sibling clashes (`409 nameAlreadyExists`).

use crate::error::GraphError;
use axum::http::StatusCode;

pub const MAX_NAME_CHARS: usize = 255;
pub const MAX_PATH_CHARS: usize = 400;

const INVALID_CHARS: &[char] = &['"', '*', ':', '<', '>', '?', '/', '\\', '|'];

fn invalid(message: String) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "invalidRequest", message)
}

/// Checks a single name (not its siblings or full path).
pub fn validate_name(name: &str) -> Result<(), GraphError> {
    if name.is_empty() {
        return Err(invalid("The name must not be empty.".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!("The name is longer than {MAX_NAME_CHARS} characters.")));
    }
    if let Some(c) = name.chars().find(|c| INVALID_CHARS.contains(c)) {
        return Err(invalid(format!("The name contains the invalid character '{c}'.")));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid("The name contains a control character.".into()));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(invalid("The name cannot begin or end with a space.".into()));
    }
    let lower = name.to_lowercase();
    let stem = lower.split('.').next().unwrap_or("");
    let reserved_device = matches!(stem, "con" | "prn" | "aux" | "nul")
        || ((stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved_device {
        return Err(invalid(format!("The name '{name}' is reserved.")));
    }
    if lower == ".lock" || lower == "desktop.ini" || lower.contains("_vti_") {
        return Err(invalid(format!("The name '{name}' is reserved.")));
    }
    Ok(())
}

/// Checks a full path (`/a/b/name`, root excluded) against the path limit.
pub fn validate_path_len(path: &str) -> Result<(), GraphError> {
    if path.chars().count() > MAX_PATH_CHARS {
        return Err(invalid(format!("The full path is longer than {MAX_PATH_CHARS} characters.")));
    }
    Ok(())
}

/// 409 when `name` equals a sibling's name ignoring case.
pub fn check_sibling_clash<'a>(name: &str, siblings: impl IntoIterator<Item = &'a str>) -> Result<(), GraphError> {
    let lower = name.to_lowercase();
    if siblings.into_iter().any(|s| s.to_lowercase() == lower) {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "nameAlreadyExists",
            format!("An item named '{name}' already exists in this folder."),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_but_legal_names_pass() {
        for n in [
            "café.txt",
            "a..b",
            "..hidden",
            "~$lock.docx",
            "📁 Photos 🎉",
            "مرحبا.txt",
            "100%2F.txt",
            "null%00byte.txt",
            "file...v2.txt",
            "CONTENT.txt",
            "console",
        ] {
            assert!(validate_name(n).is_ok(), "{n} should be allowed");
        }
    }

    #[test]
    fn illegal_names_are_rejected() {
        let long = "x".repeat(256);
        for n in [
            "a:b",
            "a*b",
            "q?",
            "a/b",
            "a\\b",
            "a|b",
            "<x>",
            "\"q\"",
            " lead",
            "trail ",
            "CON",
            "con.txt",
            "Nul",
            "COM1",
            "lpt9.doc",
            ".lock",
            "desktop.ini",
            "x_vti_y",
            "tab\there",
            long.as_str(),
            "",
        ] {
            assert!(validate_name(n).is_err(), "{n:?} should be rejected");
        }
    }

    #[test]
    fn sibling_clash_ignores_case() {
        assert!(check_sibling_clash("Report.DOCX", ["report.docx"]).is_err());
        assert!(check_sibling_clash("report2.docx", ["report.docx"]).is_ok());
    }
}
