//! Which files a policy set was built from, as one hash: what a broker reports it runs, what an
//! issued writ records, and what a reload compares to tell whether anything changed.
//!
//! The hash is SHA-256 over the files sorted by name, each as `name \0 len \0 bytes` (`len` in
//! decimal): the same bytes under the same names always give the same hash on every replica, and
//! any changed byte, renamed, added or removed file gives another. The length keeps one file's
//! bytes from passing for the next file's name.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::PolicyError;

/// One policy file: its name in the policy directory and the SHA-256 of its bytes, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFileDigest {
    pub name: String,
    pub sha256: String,
}

/// The policy set's identity: the hash of all its files, and each file's own digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicySource {
    pub hash: String,
    /// Sorted by name.
    pub files: Vec<PolicyFileDigest>,
}

impl PolicySource {
    /// The source of `files`, `(name, bytes)` in any order.
    pub fn of<B: AsRef<[u8]>>(files: &[(String, B)]) -> PolicySource {
        let mut sorted: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_ref()))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut set = Sha256::new();
        let mut digests = Vec::with_capacity(sorted.len());
        for (name, bytes) in sorted {
            set.update(name.as_bytes());
            set.update([0]);
            set.update(bytes.len().to_string().as_bytes());
            set.update([0]);
            set.update(bytes);
            digests.push(PolicyFileDigest {
                name: name.to_owned(),
                sha256: hex::encode(Sha256::digest(bytes)),
            });
        }
        PolicySource {
            hash: hex::encode(set.finalize()),
            files: digests,
        }
    }
}

/// Largest policy file read, in bytes: a policy directory holds text written by people.
pub const MAX_POLICY_FILE_BYTES: u64 = 1024 * 1024;

/// The policy files of a directory as read at one moment: what is hashed is what is parsed.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    /// Each file's path and text, sorted by name.
    pub(super) files: Vec<(std::path::PathBuf, String)>,
    pub source: PolicySource,
}

impl PolicyFiles {
    /// Reads every `*.toml` (not `*.test.toml`) file in `dir`. Each must be a regular file (a
    /// symlink to one is fine, as Kubernetes mounts ConfigMaps) of at most
    /// [`MAX_POLICY_FILE_BYTES`] in UTF-8; anything else is an error naming the file.
    pub fn read(dir: &Path) -> Result<PolicyFiles, PolicyError> {
        let mut files = Vec::new();
        for path in super::policy_files(dir, false)? {
            let text = read_policy_file(&path)?;
            files.push((path, text));
        }
        let named: Vec<(String, &str)> = files
            .iter()
            .map(|(path, text)| (file_name(path), text.as_str()))
            .collect();
        let source = PolicySource::of(&named);
        Ok(PolicyFiles { files, source })
    }
}

fn read_policy_file(path: &Path) -> Result<String, PolicyError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let refuse = |message: String| PolicyError {
        location: path.display().to_string(),
        message,
    };
    // Opened without blocking, then checked: a FIFO must not hang the reader, and what is
    // checked is what is read.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| PolicyError::io(path, e))?;
    let metadata = file.metadata().map_err(|e| PolicyError::io(path, e))?;
    if !metadata.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| PolicyError::io(path, e))?;
    if bytes.len() as u64 > MAX_POLICY_FILE_BYTES {
        return Err(refuse(format!(
            "larger than {} KiB",
            MAX_POLICY_FILE_BYTES / 1024
        )));
    }
    String::from_utf8(bytes).map_err(|_| refuse("not UTF-8 text".into()))
}

/// The name a policy file is known by: its name in the directory.
pub(super) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn source(files: &[(&str, &str)]) -> PolicySource {
        let files: Vec<(String, &str)> = files
            .iter()
            .map(|(name, text)| ((*name).to_owned(), *text))
            .collect();
        PolicySource::of(&files)
    }

    const A: (&str, &str) = ("a.toml", "[[policy]]\nname = \"a\"\n");
    const B: (&str, &str) = ("b.toml", "[[policy]]\nname = \"b\"\n");

    #[test]
    fn the_same_bytes_under_the_same_names_give_the_same_hash_in_any_order() {
        let one = source(&[A, B]);
        assert_eq!(one, source(&[B, A]));
        assert_eq!(one.hash.len(), 64);
        assert!(one.hash.bytes().all(|b| b.is_ascii_hexdigit()));
        let names: Vec<&str> = one.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        assert_eq!(
            one.files[0].sha256,
            hex::encode(Sha256::digest(A.1.as_bytes()))
        );
    }

    #[test]
    fn one_changed_byte_changes_the_hash_and_that_file_s_digest_only() {
        let before = source(&[A, B]);
        let after = source(&[A, ("b.toml", "[[policy]]\nname = \"c\"\n")]);
        assert_ne!(before.hash, after.hash);
        assert_eq!(before.files[0], after.files[0]);
        assert_ne!(before.files[1].sha256, after.files[1].sha256);
    }

    #[test]
    fn a_renamed_added_or_removed_file_changes_the_hash() {
        let before = source(&[A, B]);
        let renamed = source(&[A, ("c.toml", B.1)]);
        let added = source(&[A, B, ("c.toml", "")]);
        let removed = source(&[A]);
        let hashes = [&before, &renamed, &added, &removed].map(|s| s.hash.clone());
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(source(&[]).hash, removed.hash);
    }

    #[test]
    fn bytes_cannot_pass_for_the_next_file_s_name() {
        // `name \0 bytes` alone would hash one file "a.toml" holding "Xb.toml\0Y" exactly as
        // "a.toml" holding "X" beside "b.toml" holding "Y".
        let joined = source(&[("a.toml", "Xb.toml\0Y")]);
        let split = source(&[("a.toml", "X"), ("b.toml", "Y")]);
        assert_ne!(joined.hash, split.hash);
    }

    #[test]
    fn a_directory_is_read_as_its_policy_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(A.0), A.1).unwrap();
        std::fs::write(dir.path().join(B.0), B.1).unwrap();
        std::fs::write(dir.path().join("b.test.toml"), "[[case]]").unwrap();
        std::fs::write(dir.path().join("notes.md"), "hello").unwrap();
        assert_eq!(
            PolicyFiles::read(dir.path()).unwrap().source,
            source(&[A, B])
        );
        // Read without parsing, or loaded: the same source.
        std::fs::write(
            dir.path().join(B.0),
            "[[policy]]\nname = \"b\"\nissuer = \"k8s\"\nresources = [\"a/*\"]\n\
             operations = [\"read\"]\nservices = [\"api\"]\nmax_ttl = \"5m\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(A.0), "").unwrap();
        let loaded = crate::policy::PolicySet::load_dir(dir.path(), std::time::Duration::MAX)
            .unwrap()
            .source;
        assert_eq!(loaded, PolicyFiles::read(dir.path()).unwrap().source);
        assert_eq!(loaded.files.len(), 2);
        let error = PolicyFiles::read(&dir.path().join("gone")).unwrap_err();
        assert!(error.location.ends_with("gone"), "{error}");
    }

    #[test]
    fn fifos_huge_files_and_non_text_are_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("a.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let error = PolicyFiles::read(dir.path()).unwrap_err();
        assert_eq!(error.message, "not a regular file", "{error}");
        std::fs::remove_file(&fifo).unwrap();

        let huge = "#".repeat(MAX_POLICY_FILE_BYTES as usize + 1);
        std::fs::write(dir.path().join("b.toml"), huge).unwrap();
        let error = PolicyFiles::read(dir.path()).unwrap_err();
        assert!(error.message.contains("larger than 1024 KiB"), "{error}");
        std::fs::write(dir.path().join("b.toml"), [0xff, 0xfe]).unwrap();
        let error = PolicyFiles::read(dir.path()).unwrap_err();
        assert_eq!(error.message, "not UTF-8 text", "{error}");

        // A symlink to a regular file is read (Kubernetes mounts ConfigMaps that way).
        std::fs::write(dir.path().join("real"), A.1).unwrap();
        std::fs::remove_file(dir.path().join("b.toml")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join(A.0)).unwrap();
        assert_eq!(PolicyFiles::read(dir.path()).unwrap().source, source(&[A]));
    }
}
