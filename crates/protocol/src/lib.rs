//! Client <-> server wire types of the cairn HTTP API (JSON for control, raw frames for chunks).
//!
//! Every request and answer body is one of these types; paths travel as [`RelPath`] so a path
//! that is not relative, normalised and free of `..` is refused while the body is parsed. The
//! chunk-upload body is a sequence of frames, see [`frame`].

use std::collections::HashSet;

use cairn_model::{ChunkId, ContentHash, DeviceId, Entry, EntryKind, RelPath, Seq};
use serde::{Deserialize, Serialize};

pub mod commit_stream;
pub mod frame;
mod inline;
pub mod stream;
pub mod token;

pub use inline::Inline;

/// Bumped on any incompatible change; sent as `X-Cairn-Api`.
pub const API_VERSION: u32 = 1;
/// Longest a journal long-poll may wait, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;
/// Most changes one commit may carry (clients split larger batches). A move writes two
/// versions, so the most a commit writes is twice this.
pub const MAX_COMMIT_CHANGES: usize = 25_000;
/// Most chunk references all the changes of one commit may carry together (moves count the
/// references they copy): one file of about 480 GiB at the largest chunk class. Sized, like
/// the limit of changes, so the largest commit is checked and stored in under a second on a
/// small machine (bench/limits.sh).
pub const MAX_COMMIT_CHUNKS: usize = 60_000;
/// Most chunk ids one "which are missing" question may carry.
pub const MAX_MISSING_IDS: usize = 100_000;

/// Largest file whose whole content may travel inline: in a commit (instead of a "missing"
/// question and an upload) or in a journal answer (instead of a content request).
pub const MAX_INLINE_FILE: u64 = 16 * 1024;
/// Most inline content bytes all the changes of one commit request may carry together (within
/// the server's limit on a commit body); a request over it is refused with 413.
pub const MAX_INLINE_COMMIT: u64 = 1 << 20;
/// Most inline content bytes one journal answer carries; later small files come without.
pub const MAX_INLINE_JOURNAL: u64 = 256 * 1024;
/// Content rides along only on journal answers of at most this many changes: a wake-up for a
/// few edits. A long answer (a folder moved, many files added) is read as before, where
/// batched reads work and content a computer already has (a move) is not sent again.
pub const MAX_INLINE_CHANGES: usize = 16;

/// Most files one "contents" request may name.
pub const MAX_BATCH_FILES: usize = 256;
/// Most bytes the files of one "contents" request may add up to.
pub const MAX_BATCH_BYTES: u64 = 4 << 20;

/// One version of a file, by path and sequence number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    pub path: RelPath,
    pub seq: Seq,
}

/// The whole contents of several small files in one answer: their bytes one after another, in
/// the order asked, with no separator (the client knows each version's size and hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContentsRequest {
    pub files: Vec<FileRef>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
    pub device: Option<DeviceId>,
    /// The computer's name as its user calls it (shown in version history); at most
    /// [`MAX_COMPUTER_NAME`] bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer: Option<String>,
}

/// Everything but the password, which never reaches a log.
impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("device", &self.device)
            .field("computer", &self.computer)
            .finish()
    }
}

/// Everything but the token.
impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &"<redacted>")
            .field("expires_ns", &self.expires_ns)
            .field("server_id", &self.server_id)
            .field("admin", &self.admin)
            .field("features", &self.features)
            .finish()
    }
}

/// Longest computer name a login may carry, in bytes.
pub const MAX_COMPUTER_NAME: usize = 64;

/// True for a computer name the server records: 1 to 64 bytes, no control characters.
pub fn is_valid_computer_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_COMPUTER_NAME && !name.chars().any(char::is_control)
}

#[derive(Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    pub token: String,
    pub expires_ns: i64,
    /// Identity created when the server's data folder was made; a client that sees another one
    /// is talking to a different (or restored) server.
    pub server_id: String,
    pub admin: bool,
    /// What this server understands beyond [`API_VERSION`] 1 as it first shipped, so a client
    /// uses it only where it is known (clients ignore names they do not know, and servers
    /// before this field send none). See [`FEATURE_TOKEN_HEADER`], [`FEATURE_DERIVED_INLINE`]
    /// and [`FEATURE_JOURNAL_STREAM`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// The server takes the bearer token in [`TOKEN_HEADER`] as well as in `Authorization`.
pub const FEATURE_TOKEN_HEADER: &str = "token-header";
/// A commit's change with inline content may leave out its chunk list and content hash: the
/// server derives both from the content (see [`Change::inline`]).
pub const FEATURE_DERIVED_INLINE: &str = "derived-inline";
/// `journal?stream=true` answers with a stream of frames (see [`stream`]).
pub const FEATURE_JOURNAL_STREAM: &str = "journal-stream";
/// `POST .../commit-stream` takes commits as frames on one open request (see
/// [`commit_stream`]).
pub const FEATURE_COMMIT_STREAM: &str = "commit-stream";
/// A header that carries the bearer token (without `Bearer `). HTTP/2's HPACK never indexes an
/// `Authorization` value (the `h2` crate follows nghttp2 there), so a token in it costs about
/// 150 bytes on every request; in this header it costs them once per connection and a byte
/// after that. HPACK matches only whole values, so indexing a long random token tells nothing
/// to whoever can influence other headers of the connection.
pub const TOKEN_HEADER: &str = "x-cairn-token";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Rw,
    Ro,
}

impl Access {
    pub fn parse(s: &str) -> Option<Access> {
        match s {
            "rw" => Some(Access::Rw),
            "ro" => Some(Access::Ro),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Rw => "rw",
            Access::Ro => "ro",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FolderInfo {
    pub name: String,
    pub access: Access,
    pub keep_versions: u32,
    pub head: Seq,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MissingRequest {
    pub chunks: Vec<ChunkId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MissingResponse {
    pub missing: Vec<ChunkId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UploadResponse {
    pub stored: u32,
    pub bytes: u64,
}

/// One chunk of a version's content, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkSpan {
    pub id: ChunkId,
    pub len: u32,
}

/// One change of a commit: the new state of `path`, based on the version the client last saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: RelPath,
    /// The head the client based the change on; `None` when it believes the path does not exist.
    pub base: Option<Seq>,
    /// The new state; kind `deleted` deletes the path.
    pub entry: Entry,
    /// Content of a file, in order; empty for other kinds and for empty files.
    #[serde(default)]
    pub chunks: Vec<ChunkSpan>,
    /// A move: the new path takes the content of `moved_from` (no chunks are sent) and
    /// `moved_from` is deleted, in the same transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<MovedFrom>,
    /// A small file's whole content (at most [`MAX_INLINE_FILE`] bytes): the server checks it
    /// against `chunks` and the entry's hash and stores it as an upload would, so the client
    /// neither asks which chunks are missing nor uploads them. Servers before this field
    /// ignore it and answer `missing_chunks`, and the client uploads as before. To a server
    /// with [`FEATURE_DERIVED_INLINE`] the change may leave out `chunks` and the entry's hash
    /// (both follow from the content: [`Change::derive_from_inline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Inline>,
}

impl Change {
    /// The inline content's bytes, 0 without any.
    pub fn inline_len(&self) -> u64 {
        self.inline.as_ref().map_or(0, |i| i.0.len() as u64)
    }

    /// For a file change that carries its content inline with neither a chunk list nor a
    /// content hash: fills both in from the content, cut as every client cuts it. Anything
    /// else is left as it is (and checked against its content as before).
    pub fn derive_from_inline(&mut self) {
        let Some(Inline(data)) = &self.inline else {
            return;
        };
        if self.entry.kind != EntryKind::File
            || !self.chunks.is_empty()
            || self.entry.hash.is_some()
        {
            return;
        }
        let digest = cairn_model::chunking::digest_bytes(data);
        self.entry.hash = Some(digest.hash);
        self.chunks = digest
            .chunks
            .iter()
            .map(|c| ChunkSpan {
                id: c.id,
                len: c.len,
            })
            .collect();
    }

    /// The inverse of [`Change::derive_from_inline`], for a server that derives them: leaves
    /// out the chunk list and the content hash of a file change with inline content, when
    /// they are exactly what the content gives (they travel in the content already).
    pub fn strip_derived(&mut self) {
        let Some(Inline(data)) = &self.inline else {
            return;
        };
        if self.entry.kind != EntryKind::File || self.moved_from.is_some() {
            return;
        }
        let digest = cairn_model::chunking::digest_bytes(data);
        let same = self.entry.hash == Some(digest.hash)
            && self.chunks.len() == digest.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&digest.chunks)
                .all(|(a, b)| a.id == b.id && a.len == b.len);
        if same {
            self.entry.hash = None;
            self.chunks.clear();
        }
    }
}

/// The source of a move, with the head the client saw there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MovedFrom {
    pub path: RelPath,
    pub base: Seq,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitRequest {
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChangeResult {
    /// Stored as version `seq` (or already equal to the head `seq`: nothing new was written).
    Accepted { seq: Seq },
    /// The path's head is not the change's base; nothing was written for this path.
    Conflict { head: Option<VersionInfo> },
    /// Some chunks are not on the server (never uploaded, or collected since); upload and retry.
    MissingChunks { chunks: Vec<ChunkId> },
    /// Not allowed or not valid; the reason says why.
    Refused { reason: String },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommitResponse {
    pub results: Vec<ChangeResult>,
    pub head: Seq,
}

/// One version of one path, as history and the journal show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub path: RelPath,
    pub seq: Seq,
    pub entry: Entry,
    pub device: DeviceId,
    /// The user who committed it.
    #[serde(default)]
    pub user: String,
    /// The name of the computer it came from, as that computer's login gave it.
    #[serde(default)]
    pub computer: String,
    /// When the server accepted it (ns since the epoch).
    pub committed_ns: i64,
    /// A small file's content, in a journal answer that asked for it (`inline=true`): at most
    /// [`MAX_INLINE_FILE`] bytes each, [`MAX_INLINE_JOURNAL`] for the answer. A reader checks
    /// it against the entry's hash before using it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Inline>,
}

impl VersionInfo {
    pub fn is_deleted(&self) -> bool {
        self.entry.kind == EntryKind::Deleted
    }

    /// The inline content, only when it is the content of a file of this entry's size and
    /// hash: anything else (a wrong length, other bytes, no hash) is dropped, and the reader
    /// fetches the file as it would without it.
    pub fn checked_inline(&self) -> Option<&bytes::Bytes> {
        let data = &self.inline.as_ref()?.0;
        let e = &self.entry;
        let ok = e.kind == EntryKind::File
            && data.len() as u64 == e.size
            && e.hash == Some(ContentHash::of(data));
        ok.then_some(data)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JournalResponse {
    pub changes: Vec<VersionInfo>,
    /// The folder's newest sequence number when the changes were read; ask again after it
    /// (or after the last change, which may be newer).
    pub head: Seq,
    pub server_id: String,
    /// The caller's access to the folder now (servers before this field did not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// The folder's incarnation: a folder deleted and made again under its name has another,
    /// so a computer that synced the old one merges instead of taking its absence for
    /// deletions (servers before this field did not send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder_id: Option<i64>,
}

impl JournalResponse {
    /// Who answered, as a computer keeps it to know the folder it synced with again: the
    /// server's id and the folder's incarnation.
    pub fn identity(&self) -> String {
        identity_of(&self.server_id, self.folder_id)
    }
}

/// A server's id and a folder's incarnation as one identity (the server's id alone from a
/// server that does not say the incarnation).
pub fn identity_of(server_id: &str, folder_id: Option<i64>) -> String {
    match folder_id {
        Some(id) => format!("{server_id}#{id}"),
        None => server_id.to_string(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TreeResponse {
    pub entries: Vec<VersionInfo>,
    pub head: Seq,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VersionsResponse {
    pub versions: Vec<VersionInfo>,
}

/// Paths whose content the server lost part of (see `GET .../damaged`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DamagedResponse {
    pub paths: Vec<RelPath>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChunkListResponse {
    pub chunks: Vec<ChunkSpan>,
    /// The version the list belongs to (kind, size, hash): a reader checks what it fetches
    /// against it without asking for the path's history (servers before this field did not
    /// send it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

/// Body of every non-2xx answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// An answer the client refuses although it parsed: it contradicts the request it answers.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAnswer(String);

impl MissingResponse {
    /// Every id said missing was asked about.
    ///
    /// # Errors
    /// An id not in `asked`, or more ids than were asked.
    pub fn check(&self, asked: &[ChunkId]) -> Result<(), InvalidAnswer> {
        if self.missing.len() > asked.len() {
            return Err(InvalidAnswer(format!(
                "{} chunks said missing of {} asked",
                self.missing.len(),
                asked.len()
            )));
        }
        let asked: HashSet<&ChunkId> = asked.iter().collect();
        match self.missing.iter().find(|id| !asked.contains(id)) {
            Some(id) => Err(InvalidAnswer(format!(
                "chunk {id} said missing was not asked"
            ))),
            None => Ok(()),
        }
    }
}

impl CommitResponse {
    /// One result per change.
    ///
    /// # Errors
    /// Another number of results.
    pub fn check(&self, changes: usize) -> Result<(), InvalidAnswer> {
        if self.results.len() == changes {
            Ok(())
        } else {
            Err(InvalidAnswer(format!(
                "{} results for {changes} changes",
                self.results.len()
            )))
        }
    }
}

impl TreeResponse {
    /// Every entry lies under the prefix that was listed.
    ///
    /// # Errors
    /// An entry outside `prefix`.
    pub fn check(&self, prefix: &RelPath) -> Result<(), InvalidAnswer> {
        match self.entries.iter().find(|v| !v.path.starts_with(prefix)) {
            Some(v) => Err(InvalidAnswer(format!(
                "entry {} is outside the listed prefix {prefix}",
                v.path
            ))),
            None => Ok(()),
        }
    }
}

impl JournalResponse {
    /// Every change is newer than the one asked after.
    ///
    /// # Errors
    /// A change at or before `after`.
    pub fn check(&self, after: Seq) -> Result<(), InvalidAnswer> {
        match self.changes.iter().find(|v| v.seq <= after) {
            Some(v) => Err(InvalidAnswer(format!(
                "change {} of {} is not after {}",
                v.seq, v.path, after
            ))),
            None => Ok(()),
        }
    }
}

impl ChunkListResponse {
    /// No chunk is longer than a frame may carry (the longest chunk that can exist), and the
    /// chunks of a file add up to its size.
    ///
    /// # Errors
    /// A chunk over [`frame::MAX_FRAME_LEN`]; chunks that do not make the entry given.
    pub fn check(&self) -> Result<(), InvalidAnswer> {
        if let Some(c) = self.chunks.iter().find(|c| c.len > frame::MAX_FRAME_LEN) {
            return Err(InvalidAnswer(format!(
                "chunk {} is said to be {} bytes, over the {} a chunk may have",
                c.id,
                c.len,
                frame::MAX_FRAME_LEN
            )));
        }
        let total: u64 = self.chunks.iter().map(|c| u64::from(c.len)).sum();
        match &self.entry {
            Some(e) if e.kind == EntryKind::File && e.size != total => Err(InvalidAnswer(format!(
                "chunks of {total} bytes for a file of {}",
                e.size
            ))),
            Some(e) if e.kind != EntryKind::File && total != 0 => Err(InvalidAnswer(format!(
                "chunks of {total} bytes for a {}",
                e.kind.as_str()
            ))),
            _ => Ok(()),
        }
    }
}

/// Folder and user names: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_with_an_escaping_path_does_not_parse() {
        let json = r#"{"path":"../etc/passwd","base":null,"entry":{"kind":"dir","size":0,"mtime_ns":0,"mode":493,"hash":null}}"#;
        let err = serde_json::from_str::<Change>(json).expect_err("must refuse");
        assert!(err.to_string().contains("'..'"), "{err}");
        let ok = r#"{"path":"a/b","base":3,"entry":{"kind":"deleted","size":0,"mtime_ns":0,"mode":0,"hash":null}}"#;
        assert!(serde_json::from_str::<Change>(ok).is_ok());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let req = LoginRequest {
            user: "alice".into(),
            password: "hunter2".into(),
            device: None,
            computer: None,
        };
        assert!(!format!("{req:?}").contains("hunter2"));
        let resp = LoginResponse {
            token: "v1.secret-token".into(),
            expires_ns: 0,
            server_id: "s".into(),
            admin: false,
            features: Vec::new(),
        };
        assert!(!format!("{resp:?}").contains("secret-token"));
    }

    #[test]
    fn computer_names_are_short_and_printable() {
        assert!(is_valid_computer_name("Anna's laptop"));
        assert!(!is_valid_computer_name(""));
        assert!(!is_valid_computer_name("evil\u{1b}[2J"));
        assert!(!is_valid_computer_name("two\nlines"));
        assert!(!is_valid_computer_name(&"x".repeat(MAX_COMPUTER_NAME + 1)));
    }

    #[test]
    fn a_chunk_list_must_make_the_entry_it_names() {
        let span = |len| ChunkSpan {
            id: ChunkId::of(b"x"),
            len,
        };
        let entry = |kind, size| Entry {
            kind,
            size,
            mtime_ns: 0,
            mode: 0o644,
            hash: None,
            target: None,
        };
        let list = |chunks, entry| ChunkListResponse { chunks, entry };
        assert!(
            list(vec![span(3), span(4)], Some(entry(EntryKind::File, 7)))
                .check()
                .is_ok()
        );
        assert!(list(vec![span(3)], Some(entry(EntryKind::File, 7)))
            .check()
            .is_err());
        assert!(list(vec![span(3)], Some(entry(EntryKind::Dir, 0)))
            .check()
            .is_err());
        // An older server names no entry: only the chunks' own bounds are checked.
        assert!(list(vec![span(3)], None).check().is_ok());
        let json = r#"{"chunks":[]}"#;
        let old: ChunkListResponse = serde_json::from_str(json).expect("an older answer parses");
        assert!(old.entry.is_none());
    }

    #[test]
    fn inline_content_is_used_only_when_it_is_the_versions_content() {
        let data = b"the content of a small file";
        let version = |inline: &[u8], size| VersionInfo {
            path: RelPath::parse("f.txt").expect("path"),
            seq: Seq(3),
            entry: Entry {
                kind: EntryKind::File,
                size,
                mtime_ns: 0,
                mode: 0o644,
                hash: Some(ContentHash::of(data)),
                target: None,
            },
            device: DeviceId("pc".into()),
            user: "alice".into(),
            computer: String::new(),
            committed_ns: 0,
            inline: Some(Inline(bytes::Bytes::copy_from_slice(inline))),
        };
        let n = data.len() as u64;
        assert_eq!(
            version(data, n).checked_inline().map(|b| b.to_vec()),
            Some(data.to_vec())
        );
        let mut other = data.to_vec();
        other[0] ^= 1;
        assert!(version(&other, n).checked_inline().is_none(), "other bytes");
        assert!(
            version(data, n + 1).checked_inline().is_none(),
            "another size"
        );
        let mut no_hash = version(data, n);
        no_hash.entry.hash = None;
        assert!(
            no_hash.checked_inline().is_none(),
            "no hash to check against"
        );
        // An answer from a server before the field parses, without content.
        let json = serde_json::to_value(version(data, n)).expect("json");
        let mut old = json.clone();
        old.as_object_mut().expect("object").remove("inline");
        let parsed: VersionInfo = serde_json::from_value(old).expect("older answer parses");
        assert!(parsed.inline.is_none());
    }

    #[test]
    fn a_change_with_inline_content_travels_without_what_the_content_gives() {
        let data = b"a small file, edited";
        let full = Change {
            path: RelPath::parse("f.txt").expect("path"),
            base: Some(Seq(4)),
            entry: Entry {
                kind: EntryKind::File,
                size: data.len() as u64,
                mtime_ns: 7,
                mode: 0o644,
                hash: Some(ContentHash::of(data)),
                target: None,
            },
            chunks: vec![ChunkSpan {
                id: ChunkId::of(data),
                len: data.len() as u32,
            }],
            moved_from: None,
            inline: Some(Inline(bytes::Bytes::from_static(data))),
        };
        let mut short = full.clone();
        short.strip_derived();
        assert!(short.chunks.is_empty() && short.entry.hash.is_none());
        let mut back = short.clone();
        back.derive_from_inline();
        assert_eq!(back, full);
        // A chunk list that is not the content's stays, so the server checks (and refuses) it.
        let mut lying = full.clone();
        lying.chunks[0].id = ChunkId::of(b"other");
        let kept = lying.clone();
        lying.strip_derived();
        assert_eq!(lying, kept);
        // A change that names either keeps what it names.
        let mut half = short.clone();
        half.entry.hash = Some(ContentHash::of(b"other"));
        let before = half.clone();
        half.derive_from_inline();
        assert_eq!(half, before);
    }

    #[test]
    fn a_login_answer_of_a_server_before_features_names_none() {
        let old = r#"{"token":"t","expires_ns":1,"server_id":"s","admin":false}"#;
        let r: LoginResponse = serde_json::from_str(old).expect("an older answer parses");
        assert!(r.features.is_empty());
        let new = r#"{"token":"t","expires_ns":1,"server_id":"s","admin":false,"features":["journal-stream","from-the-future"]}"#;
        let r: LoginResponse =
            serde_json::from_str(new).expect("unknown names are kept, not refused");
        assert_eq!(r.features, [FEATURE_JOURNAL_STREAM, "from-the-future"]);
    }

    #[test]
    fn results_are_tagged() {
        let r = ChangeResult::Accepted { seq: Seq(7) };
        assert_eq!(
            serde_json::to_string(&r).expect("serialise"),
            r#"{"status":"accepted","seq":7}"#
        );
    }
}
