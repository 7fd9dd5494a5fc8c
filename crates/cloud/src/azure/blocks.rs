//! Azure block uploads that resume after an interruption (a killed run, a lost network).
//!
//! OpenDAL uploads a large blob as blocks under random ids (Put Block) and commits their list
//! (Put Block List); blocks not committed stay on the service, uncommitted, for a week. Here:
//! - every block the service acknowledged is recorded in the task's state file: blob, block
//!   id, size and the BLAKE3 of its bytes; a committed blob (Put Block List, or a Put Blob
//!   that replaces it) is forgotten;
//! - when a later run writes the same blob, the first Put Block asks the service which
//!   uncommitted blocks it holds (Get Block List), and keeps the recorded ones it still has;
//! - a Put Block whose bytes have the BLAKE3 and size of such a block is answered here and
//!   not sent; its new id is noted as an alias of the held one, and Put Block List names the
//!   held id in its place (ids have one length, so the request's length and signature hold).
//!
//! So a blob is only ever made of blocks whose bytes equal what OpenDAL is writing now at that
//! place: a file that changed since sends every block whose bytes changed, and one that
//! changed throughout sends all of them, as a first upload would.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use http::{Request, StatusCode};
use opendal::{Buffer, HttpBody};
use serde::{Deserialize, Serialize};

use super::AzureAuth;
use crate::hook::{content_id, OnAnswer, StateFile, KEPT_SECS};
use crate::multipart::now_secs;

/// A block the service acknowledged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Block {
    /// Base64, as sent.
    id: String,
    size: u64,
    /// BLAKE3 of its bytes, hex.
    content: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Staged {
    /// Unix seconds of the first block recorded.
    started: i64,
    blocks: Vec<Block>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    /// By blob URL (scheme, host and path).
    #[serde(default)]
    blobs: BTreeMap<String, Staged>,
}

/// What becomes of a Put Block.
pub(super) enum Put {
    /// The service holds these bytes already.
    Answered(http::Response<HttpBody>),
    /// Send it; this hears the answer.
    Send(OnAnswer),
}

#[derive(Debug)]
pub(super) struct Blocks {
    file: std::sync::Arc<StateFile<Saved>>,
    /// Per blob written in this run: the recorded blocks the service holds that no write of
    /// this run has used yet (looked up once per blob, at its first Put Block).
    held: tokio::sync::Mutex<HashMap<String, Vec<Block>>>,
    /// Per blob: the id OpenDAL sent, and the held block it stands for.
    aliases: std::sync::Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
}

impl Blocks {
    pub(super) fn load(file: &Path) -> Blocks {
        let file = StateFile::load(file);
        // A week old: Azure has collected those blocks.
        file.update(|saved: &mut Saved| {
            let before = saved.blobs.len();
            saved
                .blobs
                .retain(|_, s| now_secs() - s.started <= KEPT_SECS);
            ((), saved.blobs.len() != before)
        });
        Blocks {
            file: std::sync::Arc::new(file),
            held: tokio::sync::Mutex::new(HashMap::new()),
            aliases: std::sync::Arc::default(),
        }
    }

    /// A Put Block of `id` carrying `body`: answered here when the service holds a recorded
    /// block with these bytes, else sent.
    pub(super) async fn put_block(
        &self,
        client: &reqwest::Client,
        auth: &AzureAuth,
        blob: &str,
        id: &str,
        body: &Buffer,
    ) -> Put {
        let bytes = body.to_bytes();
        let block = Block {
            id: id.to_string(),
            size: bytes.len() as u64,
            content: content_id(&bytes),
        };
        if let Some(held) = self.take_held(client, auth, blob, &block).await {
            self.aliases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(blob.to_string())
                .or_default()
                .insert(block.id, held);
            return Put::Answered(crate::hook::answer(StatusCode::CREATED, &[]));
        }
        let file = self.file.clone();
        let blob = blob.to_string();
        Put::Send(Box::new(move |status, _| {
            if status.is_success() {
                file.update(|saved| {
                    let staged = saved.blobs.entry(blob).or_default();
                    if staged.blocks.is_empty() {
                        staged.started = now_secs();
                    }
                    staged.blocks.push(block);
                    ((), true)
                });
            }
        }))
    }

    /// A held block with `block`'s bytes and id length, taken out of the held ones.
    async fn take_held(
        &self,
        client: &reqwest::Client,
        auth: &AzureAuth,
        blob: &str,
        block: &Block,
    ) -> Option<String> {
        let mut held = self.held.lock().await;
        if !held.contains_key(blob) {
            let found = self.look_up(client, auth, blob).await;
            held.insert(blob.to_string(), found);
        }
        let list = held.get_mut(blob)?;
        let at = list.iter().position(|h| {
            h.content == block.content && h.size == block.size && h.id.len() == block.id.len()
        })?;
        Some(list.swap_remove(at).id)
    }

    /// The recorded blocks of `blob` the service still holds uncommitted.
    async fn look_up(&self, client: &reqwest::Client, auth: &AzureAuth, blob: &str) -> Vec<Block> {
        let recorded = self.file.update(|saved| {
            let fresh = saved
                .blobs
                .get(blob)
                .filter(|s| now_secs() - s.started <= KEPT_SECS)
                .map(|s| s.blocks.clone());
            // A week old: Azure has collected its blocks.
            let stale = fresh.is_none() && saved.blobs.remove(blob).is_some();
            (fresh.unwrap_or_default(), stale)
        });
        if recorded.is_empty() {
            return Vec::new();
        }
        let answer = auth
            .request(
                client,
                http::Method::GET,
                blob,
                "comp=blocklist&blocklisttype=uncommitted",
                &[],
            )
            .await;
        match answer {
            Ok((status, _, body)) if status.is_success() => {
                let there = uncommitted(&String::from_utf8_lossy(&body));
                recorded
                    .into_iter()
                    .filter(|b| there.get(&b.id) == Some(&b.size))
                    .collect()
            }
            // The service has no such blob any more: nothing to take up.
            Ok((StatusCode::NOT_FOUND, _, _)) => {
                self.forget(blob);
                Vec::new()
            }
            // Not known now: this run sends every block; the record stays for the next.
            _ => Vec::new(),
        }
    }

    /// `req` (a Put Block List of `blob`) naming the held blocks in place of their aliases.
    pub(super) fn aliased(&self, blob: &str, req: Request<Buffer>) -> Request<Buffer> {
        let aliases = self
            .aliases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(blob)
            .cloned()
            .unwrap_or_default();
        if aliases.is_empty() {
            return req;
        }
        let (parts, body) = req.into_parts();
        let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        let named = rename_blocks(&text, &aliases);
        Request::from_parts(parts, Buffer::from(bytes::Bytes::from(named)))
    }

    /// What to do when `blob` was written whole (Put Blob or Put Block List): on success its
    /// uncommitted blocks are gone, and so is its record.
    pub(super) fn committed(&self, blob: &str) -> OnAnswer {
        let file = self.file.clone();
        let aliases = self.aliases.clone();
        let blob = blob.to_string();
        Box::new(move |status, _| {
            if status.is_success() {
                aliases
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&blob);
                file.update(|saved| ((), saved.blobs.remove(&blob).is_some()));
            }
        })
    }

    fn forget(&self, blob: &str) {
        self.file
            .update(|saved| ((), saved.blobs.remove(blob).is_some()));
    }
}

/// Block ids and sizes in a Get Block List answer's `<UncommittedBlocks>`.
fn uncommitted(xml: &str) -> HashMap<String, u64> {
    let section = match (
        xml.find("<UncommittedBlocks>"),
        xml.find("</UncommittedBlocks>"),
    ) {
        (Some(a), Some(b)) if a < b => &xml[a..b],
        _ => return HashMap::new(),
    };
    let mut out = HashMap::new();
    let mut rest = section;
    while let Some(start) = rest.find("<Block>") {
        let Some(len) = rest[start..].find("</Block>") else {
            break;
        };
        let block = &rest[start..start + len];
        if let (Some(name), Some(size)) = (text_of(block, "Name"), text_of(block, "Size")) {
            if let Ok(size) = size.parse() {
                out.insert(name.to_string(), size);
            }
        }
        rest = &rest[start + len..];
    }
    out
}

fn text_of<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let a = xml.find(&open)? + open.len();
    let b = xml[a..].find(&close)?;
    Some(&xml[a..a + b])
}

/// A Put Block List body with each aliased id replaced by the held one.
fn rename_blocks(xml: &str, aliases: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(at) = rest.find("<Latest>") {
        let start = at + "<Latest>".len();
        let Some(len) = rest[start..].find("</Latest>") else {
            break;
        };
        let id = &rest[start..start + len];
        out.push_str(&rest[..start]);
        out.push_str(aliases.get(id).map_or(id, String::as_str));
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_blocks_are_read_from_a_block_list() {
        let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><CommittedBlocks><Block><Name>Yw==</Name><Size>9</Size></Block></CommittedBlocks><UncommittedBlocks><Block><Name>QQ==</Name><Size>4</Size></Block><Block><Name>Qg==</Name><Size>5</Size></Block></UncommittedBlocks></BlockList>";
        let got = uncommitted(xml);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got["QQ=="], 4);
        assert_eq!(got["Qg=="], 5);
        assert!(uncommitted("<BlockList><UncommittedBlocks /></BlockList>").is_empty());
    }

    #[test]
    fn a_block_list_names_the_held_blocks_for_their_aliases() {
        let xml = "<BlockList><Latest>new1</Latest><Latest>new2</Latest><Latest>new3</Latest></BlockList>";
        let aliases = HashMap::from([
            ("new1".to_string(), "old1".to_string()),
            ("new3".to_string(), "old3".to_string()),
        ]);
        assert_eq!(
            rename_blocks(xml, &aliases),
            "<BlockList><Latest>old1</Latest><Latest>new2</Latest><Latest>old3</Latest></BlockList>"
        );
    }

    #[tokio::test]
    async fn acknowledged_blocks_survive_a_reload_and_a_commit_forgets_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("uploads.json");
        let b = Blocks::load(&file);
        let transport =
            crate::transport::Transport::new(None, Default::default(), Default::default(), false)
                .expect("a transport without a CA file");
        let client = transport.http().clone();
        let body = Buffer::from(bytes::Bytes::from_static(b"block one"));
        // Nothing recorded: no request is made, the block goes out.
        let Put::Send(then) = b
            .put_block(&client, &AzureAuth::Anonymous, "http://h/c/k", "id1", &body)
            .await
        else {
            panic!("nothing is recorded: the block must be sent");
        };
        then(StatusCode::CREATED, &http::HeaderMap::new());
        let again = Blocks::load(&file);
        let saved = again
            .file
            .update(|s| (s.blobs.get("http://h/c/k").cloned(), false));
        let staged = saved.expect("recorded");
        assert_eq!(staged.blocks.len(), 1);
        assert_eq!(staged.blocks[0].id, "id1");
        assert_eq!(staged.blocks[0].content, content_id(b"block one"));
        (again.committed("http://h/c/k"))(StatusCode::CREATED, &http::HeaderMap::new());
        let last = Blocks::load(&file);
        assert!(last.file.update(|s| (s.blobs.is_empty(), false)));
    }
}
