//! Folder edits on a mailbox: create, rename, move and delete, with
//! Exchange's rules (names unique per parent in any case, distinguished
//! folders untouchable, no folder inside itself).

use axum::http::StatusCode;

use super::ids::IdRng;
use super::mail::Mailbox;
use crate::error::{GraphError, GraphResult};

impl Mailbox {
    fn check_unique(&self, parent: &str, name: &str, except: Option<&str>) -> GraphResult<()> {
        let taken = self
            .children(parent)
            .iter()
            .any(|f| Some(f.id.as_str()) != except && f.display_name.to_lowercase() == name.to_lowercase());
        if taken {
            return Err(GraphError::new(
                StatusCode::CONFLICT,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            ));
        }
        Ok(())
    }

    fn check_name(name: &str) -> GraphResult<()> {
        if name.trim().is_empty() {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorInvalidRequest",
                "The folder name cannot be empty.",
            ));
        }
        Ok(())
    }

    pub fn create_folder(&mut self, parent: &str, name: &str, hidden: bool, rng: &mut IdRng) -> GraphResult<String> {
        let parent = self.folder_or_404(parent)?.id.clone();
        Self::check_name(name)?;
        self.check_unique(&parent, name, None)?;
        Ok(self.insert_folder(&parent, name, None, hidden, rng))
    }

    fn distinguished(&self, id: &str) -> GraphResult<String> {
        let f = self.folder_or_404(id)?;
        if f.well_known.is_some() {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "ErrorDeleteDistinguishedFolder",
                "Distinguished folders cannot be deleted, moved or renamed.",
            ));
        }
        Ok(f.id.clone())
    }

    fn log_folder(&mut self, id: &str) {
        let seq = self.bump();
        self.folder_log.push((seq, id.to_string()));
    }

    pub fn rename_folder(&mut self, id: &str, name: &str) -> GraphResult<()> {
        let id = self.distinguished(id)?;
        Self::check_name(name)?;
        let parent = self.folder_or_404(&id)?.parent_id.clone().unwrap_or_default();
        self.check_unique(&parent, name, Some(&id))?;
        if let Some(f) = self.folder_mut(&id) {
            f.display_name = name.to_string();
        }
        self.log_folder(&id);
        Ok(())
    }

    pub fn move_folder(&mut self, id: &str, parent: &str) -> GraphResult<()> {
        let id = self.distinguished(id)?;
        let parent = self.folder_or_404(parent)?.id.clone();
        let mut cur = Some(parent.clone());
        while let Some(p) = cur {
            if p == id {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "ErrorMoveCopyFailed",
                    "A folder cannot be moved into itself or one of its subfolders.",
                ));
            }
            cur = self.folders.iter().find(|f| f.id == p).and_then(|f| f.parent_id.clone());
        }
        let name = self.folder_or_404(&id)?.display_name.clone();
        self.check_unique(&parent, &name, Some(&id))?;
        if let Some(f) = self.folder_mut(&id) {
            f.parent_id = Some(parent);
        }
        self.log_folder(&id);
        Ok(())
    }

    /// Deletes the folder, its subfolders and their messages, for good.
    pub fn delete_folder(&mut self, id: &str) -> GraphResult<()> {
        let id = self.distinguished(id)?;
        let mut doomed = vec![id.clone()];
        let mut at = 0;
        while at < doomed.len() {
            let kids: Vec<String> = self.children(&doomed[at]).iter().map(|f| f.id.clone()).collect();
            doomed.extend(kids);
            at += 1;
        }
        for f in doomed.iter().rev() {
            self.empty_folder(f)?;
            if let Some(folder) = self.folder_mut(f) {
                folder.deleted = true;
            }
            self.log_folder(f);
        }
        Ok(())
    }
}
