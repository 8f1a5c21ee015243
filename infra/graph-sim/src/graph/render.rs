//! driveItem and drive JSON as ODfB returns them (graph-facts §4): `cTag`
//! only on files, `parentReference.path` only outside delta, deleted items
//! reduced to `id` + `deleted: {}` (no name, no cTag), hashes omitted while
//! "not yet computed", and a pre-authenticated `@microsoft.graph.downloadUrl`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::Inner;
use crate::store::{ItemKind, ItemView};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Get,
    Delta,
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("pdf") => "application/pdf",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("mp4") => "video/mp4",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("zip") => "application/zip",
        _ => "application/octet-stream",
    }
}

/// A download URL valid for `download_url_lifetime`.
pub fn download_url(sim: &Inner, base: &str, drive: &str, item: &str) -> String {
    let exp = Utc::now().timestamp() + sim.cfg.download_url_lifetime.as_secs() as i64;
    // The app that obtained the URL pays for its downloads (resource units).
    let client = crate::throttle::current_client();
    let token = sim.signer.sign(&["dl", drive, item, &exp.to_string(), &client]);
    format!("{base}/download/{token}")
}

/// A download URL for an earlier content version of `item`.
pub fn version_download_url(sim: &Inner, base: &str, drive: &str, item: &str, version: u64) -> String {
    let exp = Utc::now().timestamp() + sim.cfg.download_url_lifetime.as_secs() as i64;
    let client = crate::throttle::current_client();
    let token = sim.signer.sign(&["dl", drive, item, &exp.to_string(), &client, &version.to_string()]);
    format!("{base}/download/{token}")
}

pub fn item_json(sim: &Inner, base: &str, v: &ItemView, mode: Mode) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(v.id));
    let mut parent = Map::new();
    parent.insert("driveId".into(), json!(v.drive_id));
    parent.insert("driveType".into(), json!(v.drive_type));
    if let Some(p) = &v.parent_id {
        parent.insert("id".into(), json!(p));
        if let (Mode::Get, Some(path)) = (mode, &v.parent_path) {
            parent.insert("path".into(), json!(format!("/drive/root:{path}")));
        }
    }
    o.insert("parentReference".into(), Value::Object(parent));
    if v.deleted {
        o.insert("deleted".into(), json!({}));
        let facet = if v.kind == ItemKind::File { "file" } else { "folder" };
        o.insert(facet.into(), json!({}));
        return Value::Object(o);
    }
    o.insert("name".into(), json!(v.name));
    o.insert("size".into(), json!(v.size));
    o.insert("eTag".into(), json!(v.etag));
    let ctag_wanted = mode == Mode::Get || sim.cfg.delta_includes_ctag;
    if v.kind == ItemKind::File && ctag_wanted {
        o.insert("cTag".into(), json!(v.ctag));
    }
    o.insert("createdDateTime".into(), json!(ts(v.created)));
    o.insert("lastModifiedDateTime".into(), json!(ts(v.modified)));
    o.insert(
        "fileSystemInfo".into(),
        json!({"createdDateTime": ts(v.created), "lastModifiedDateTime": ts(v.modified)}),
    );
    o.insert("webUrl".into(), json!(format!("{base}/personal/{}/Documents/{}", v.drive_id, v.id)));
    match v.kind {
        ItemKind::Root => {
            o.insert("root".into(), json!({}));
            o.insert("folder".into(), json!({"childCount": v.child_count}));
            o.remove("parentReference");
            o.insert("parentReference".into(), json!({"driveId": v.drive_id, "driveType": "business"}));
        }
        ItemKind::Folder => {
            o.insert("folder".into(), json!({"childCount": v.child_count}));
        }
        ItemKind::Package => {
            o.insert("package".into(), json!({"type": "oneNote"}));
        }
        ItemKind::File => {
            let mut file = Map::new();
            file.insert("mimeType".into(), json!(mime_type(&v.name)));
            let hash = v.blob.as_ref().filter(|_| v.hash_visible).and_then(|b| b.quick_xor_if_ready());
            if let Some(h) = hash {
                file.insert("hashes".into(), json!({"quickXorHash": h}));
            }
            o.insert("file".into(), Value::Object(file));
            o.insert("@microsoft.graph.downloadUrl".into(), json!(download_url(sim, base, &v.drive_id, &v.id)));
        }
    }
    Value::Object(o)
}
